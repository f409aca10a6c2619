"""`imgsearch worker`: run the Celery workers (ingest, delete, bulk ingest, reindex, reconcile).

A worker exits on some broker failures (a Redis restarted without persistence) and on kill -9;
nothing is lost (the catalog holds every unfinished row), but something must start it again.
"""

from __future__ import annotations

import click


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--concurrency", "-c", type=int, default=None,
              help="Worker processes (default: workers.concurrency).")
@click.option("--beat", is_flag=True,
              help="Also run celery beat in this process (periodic reconcile). One per install.")
@click.option("--loglevel", "-l", default="info", show_default=True)
@click.option("--hostname", "-n", default=None, help="Worker node name (several per machine).")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(concurrency: int | None, beat: bool, loglevel: str, hostname: str | None,
           celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker on the configured broker; extra arguments go to `celery worker`.

    It does not restart itself: run it under a supervisor (systemd Restart=always, a Compose
    restart policy); `imgsearch up` supervises the one it starts."""
    from services.workers.app import app

    settings = app.settings
    argv = ["worker", "--loglevel", loglevel, "--queues", settings.queue,
            "--concurrency", str(concurrency or settings.concurrency)]
    if beat:
        argv.append("--beat")
    if hostname:
        argv += ["--hostname", hostname]
    argv += list(celery_args)
    app.worker_main(argv=argv)
