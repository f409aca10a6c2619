"""The workers' Celery app (from `create_celery`, so the same broker, acks and redelivery
settings) plus one probe task whose runs a test can watch in a file: used to prove what the
broker configuration guarantees without any other service running."""

from __future__ import annotations

import os
import time
from pathlib import Path

from services.workers.app import create_celery

app = create_celery()


@app.task(name="probe.record", bind=True, acks_late=True, reject_on_worker_lost=True)
def record(self: object, path: str, seconds: float) -> None:
    """Append `start <pid>`, sleep, append `done <pid>` to the file at `path`."""
    target = Path(path)
    with target.open("a") as handle:
        handle.write(f"start {os.getpid()}\n")
    time.sleep(seconds)
    with target.open("a") as handle:
        handle.write(f"done {os.getpid()}\n")
