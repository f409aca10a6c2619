"""`imgsearch reconcile`: repair drift between the catalog and the index."""

from __future__ import annotations

import click

from imgsearch.commands._api import Api, api_options, report_job


@click.command()
@click.option("--no-wait", is_flag=True, help="Start the job and return.")
@api_options
def reconcile(no_wait: bool, url: str, username: str | None) -> None:
    """Remove orphan vectors, re-queue indexed rows without vectors and stuck uploads."""
    api = Api(url, username)
    try:
        api.login()
        job_id = api.call("POST", "/admin/reconcile")["job_id"]
        click.echo(f"reconcile job {job_id}")
        if not no_wait:
            job = api.follow(job_id, label="reconcile")
            report_job(job)
            if job["status"] != "succeeded":
                raise SystemExit(1)
    finally:
        api.close()
