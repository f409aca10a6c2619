"""`imgsearch reconcile`: repair drift between the catalog and the index."""

from __future__ import annotations

import click

from imgsearch.commands._api import api_options, run_admin_job


@click.command()
@click.option("--no-wait", is_flag=True, help="Start the job and return.")
@api_options
def reconcile(no_wait: bool, url: str, username: str | None) -> None:
    """Remove orphan vectors, re-queue indexed rows without vectors and stuck uploads."""
    run_admin_job("reconcile", url, username, wait=not no_wait)
