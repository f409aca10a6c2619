"""`imgsearch reindex`: re-embed every image into a fresh index, then swap it in."""

from __future__ import annotations

import click

from imgsearch.commands._api import api_options, run_admin_job


@click.command()
@click.option("--no-wait", is_flag=True, help="Start the job and return.")
@api_options
def reindex(no_wait: bool, url: str, username: str | None) -> None:
    """Rebuild the index (after a model change); search keeps working meanwhile."""
    run_admin_job("reindex", url, username, wait=not no_wait)
