"""`imgsearch reindex`: re-embed every image into a fresh index, then swap it in."""

from __future__ import annotations

import click

from imgsearch.commands._api import Api, api_options, report_job


@click.command()
@click.option("--no-wait", is_flag=True, help="Start the job and return.")
@api_options
def reindex(no_wait: bool, url: str, username: str | None) -> None:
    """Rebuild the index (after a model change); search keeps working meanwhile."""
    api = Api(url, username)
    try:
        api.login()
        job_id = api.call("POST", "/admin/reindex")["job_id"]
        click.echo(f"reindex job {job_id}")
        if not no_wait:
            job = api.follow(job_id, label="reindex")
            report_job(job)
            if job["status"] != "succeeded":
                raise SystemExit(1)
    finally:
        api.close()
