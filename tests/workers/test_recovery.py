"""Recovery without an operator, with real processes: a worker killed -9 while its tasks
wait to retry (on the embedded SQLite broker a taken message lives only in the worker, so
those messages die with it). A new worker with beat re-drives the lost work by itself: the
stuck rows' leases have lapsed and the queue is empty, so the light reconcile pass re-queues
them, and the job completes."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from pathlib import Path

import pytest

from services.common import queue
from services.common.vocabulary import JOB_FINISHED
from tests.helpers.worker import WorkerProcess
from tests.workers.checks import (
    assert_consistent,
    assert_gallery_indexed,
    gallery,
    wait_job,
)
from tests.workers.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RETRY_LINE = re.compile(r"transient error, retry \d+")
RECOVERED = re.compile(r"reconcile: (re-queued pending image|re-drove ingest job|"
                       r"re-drove bulk_ingest job)")


def wait_all_taken(broker_db: Path, timeout: float) -> None:
    """Until the embedded broker holds no message that a worker has not taken (kombu's
    SQLAlchemy transport marks a message invisible when a worker takes it and never shows it
    again), three reads in a row. A message still there when the worker dies is not lost work:
    the next worker simply takes it."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        with contextlib.closing(sqlite3.connect(broker_db, timeout=5)) as db:
            try:
                waiting = db.execute(
                    "SELECT COUNT(*) FROM kombu_message WHERE visible = 1").fetchone()[0]
            except sqlite3.OperationalError:  # not created yet, or locked: read again
                waiting = -1
        quiet = quiet + 1 if waiting == 0 else 0
        if quiet >= 3:
            return
        time.sleep(0.01)
    raise TimeoutError(f"messages still waiting in {broker_db} after {timeout} s")


def test_work_lost_with_a_killed_worker_is_redriven_by_beat(shared_stack: Stack,
                                                            tmp_path: Path) -> None:
    stack = shared_stack
    before = len(stack.catalog_ids("indexed"))
    count = 12
    folder = gallery(tmp_path / "in", count, offset=7000)
    broker_db = tmp_path / "broker.sqlite"
    env, producer = stack.broker(f"sqla+sqlite:///{broker_db}", "unused:",
                                 extra={"IMGSEARCH_WORKERS_PENDING_GRACE_S": "4",
                                        "IMGSEARCH_WORKERS_IMAGE_LEASE_S": "3",
                                        "IMGSEARCH_WORKERS_RECOVER_EVERY_S": "2",
                                        "IMGSEARCH_WORKERS_PENDING_TIMEOUT_S": "900"})
    stack.embedding.kill()  # every ingest meets a transient error and waits to retry
    worker = stack.worker(tmp_path, env).start()
    recovering: WorkerProcess | None = None
    try:
        job_id = stack.new_job("bulk_ingest", {"folder": str(folder)})
        stack.enqueue(queue.BULK_INGEST, {"job_id": job_id, "folder": str(folder)},
                      producer=producer)
        worker.wait_for(RETRY_LINE.pattern, timeout=120)
        # Killed once it holds every message (the other ingest may not be taken yet when
        # the first retry is logged, and a retry is published before the worker takes it).
        wait_all_taken(broker_db, timeout=60)
        worker.kill()
        stack.embedding.start()
        stalled = stack.job(job_id)
        assert stalled["status"] not in JOB_FINISHED, stalled
        recovering = WorkerProcess(env, tmp_path, concurrency=2, beat=True,
                                   extra_args=("--without-mingle", "--without-gossip"))
        recovering.start()
        job = wait_job(stack, job_id, timeout=120)  # nobody runs reconcile by hand
        assert job["status"] == "succeeded", job
        assert_gallery_indexed(stack, folder, job)
        assert_consistent(stack, before + count)
        assert RECOVERED.search(recovering.log()), recovering.tail()
    finally:
        worker.kill()
        if recovering is not None:
            recovering.stop()
        producer.close()
        if not stack.embedding.proc or stack.embedding.proc.poll() is not None:
            stack.embedding.start()  # the next test of the package needs it
