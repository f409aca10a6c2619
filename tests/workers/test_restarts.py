"""The services a worker depends on restarted under it, with real processes:

- the index service killed -9 and started again (same port, same index directory) while a
  bulk ingest runs: the ingests retry until it is back and nothing acknowledged is lost;
- the Redis broker killed and started again empty (no persistence) while a bulk ingest runs:
  the queued ingests are gone, yet the job completes, because the catalog still holds every
  pending row and an operator's reconcile re-queues them.
"""

from __future__ import annotations

import random
import re
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
    reconcile,
    wait_job,
    wait_progress,
)
from tests.workers.redis_server import RedisServer
from tests.workers.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RETRY_LINE = re.compile(r"transient error, retry \d+")
CONNECTED_LINE = re.compile(r"Connected to redis://")


def wait_log_count(worker: WorkerProcess, pattern: re.Pattern[str], count: int,
                   timeout: float) -> None:
    """Wait until `pattern` occurs at least `count` times in the worker's log (all runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(pattern.findall(worker.log())) >= count:
            return
        time.sleep(0.2)
    raise TimeoutError(f"fewer than {count} {pattern.pattern!r} in the log:\n{worker.tail()}")


def test_index_killed_and_restarted_during_bulk_ingest(shared_stack: Stack,
                                                       tmp_path: Path) -> None:
    stack = shared_stack
    before = len(stack.catalog_ids("indexed"))
    # Enough images that work remains when each kill lands: a batch of 8 costs a handful of
    # requests, so 60 images were all through the index before the progress poll saw 30.
    count = 400
    folder = gallery(tmp_path / "in", count, offset=3000)
    rng = random.Random(11)
    worker = stack.worker(tmp_path).start()
    try:
        job_id = stack.new_job("bulk_ingest", {"folder": str(folder)})
        stack.enqueue(queue.BULK_INGEST, {"job_id": job_id, "folder": str(folder)})
        for round_ in range(2):
            job = wait_progress(stack, job_id, (round_ + 1) * count // 4 + rng.randrange(5),
                                timeout=180)
            assert job["status"] not in JOB_FINISHED, "the ingest finished before the kill"
            retries = len(RETRY_LINE.findall(worker.log()))
            stack.index.kill()
            # Down until a task has met the outage and scheduled a Celery retry: the HTTP
            # client's own quick retries are spent by then.
            wait_log_count(worker, RETRY_LINE, retries + 1, timeout=120)
            stack.index.start()
        assert_gallery_indexed(stack, folder, wait_job(stack, job_id, 300))
        assert_consistent(stack, before + count)
    finally:
        worker.stop()
        if not stack.index.proc or stack.index.proc.poll() is not None:
            stack.index.start()  # the next test of the package needs it


def reconnected(worker: WorkerProcess, connected: int, timeout: float) -> bool:
    """True once the worker has connected to the broker again; False if it exited instead.

    Celery 5.7 / kombu 5.7 sometimes fail to close a channel that holds unacknowledged
    messages while the broker is down (AttributeError in the Redis transport, logged as
    "Unrecoverable error"), and the worker exits; a deployment restarts it (Compose
    `restart: unless-stopped`, systemd), and so does this test.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(CONNECTED_LINE.findall(worker.log())) > connected:
            return True
        if not worker.alive():
            return False
        time.sleep(0.2)
    raise TimeoutError(f"the worker neither reconnected nor exited:\n{worker.tail()}")


def test_redis_restarted_empty_during_bulk_ingest(shared_stack: Stack, tmp_path: Path) -> None:
    stack = shared_stack
    before = len(stack.catalog_ids("indexed"))
    count = 60
    folder = gallery(tmp_path / "in", count, offset=4000)
    server = RedisServer(tmp_path).start()
    # Pending rows untouched for 2 s count as lost; the test's rows are all older than that
    # once the broker has come back.
    env, producer = stack.broker(server.url, "imgsearch-restart:",
                                 extra={"IMGSEARCH_WORKERS_PENDING_TIMEOUT_S": "2"})
    worker = stack.worker(tmp_path, env).start()
    try:
        job_id = stack.new_job("bulk_ingest", {"folder": str(folder)})
        stack.enqueue(queue.BULK_INGEST, {"job_id": job_id, "folder": str(folder)},
                      producer=producer)
        job = wait_progress(stack, job_id, 10, timeout=180)
        assert job["status"] not in JOB_FINISHED, "the ingest finished before the restart"
        connected = len(CONNECTED_LINE.findall(worker.log()))
        assert server.dbsize() > 0  # the queued ingests live only in Redis
        server.kill()
        time.sleep(1.0)
        server.start()
        assert server.dbsize() == 0  # back empty: every queued message is lost
        if not reconnected(worker, connected, timeout=120):
            worker = stack.worker(tmp_path, env).start()

        stalled = stack.job(job_id)
        assert stalled["status"] not in JOB_FINISHED and stalled["done"] < count, stalled
        assert reconcile(stack, producer, timeout=120)["status"] == "succeeded"
        job = wait_job(stack, job_id, 300)
        assert_gallery_indexed(stack, folder, job)
        assert_consistent(stack, before + count)
    finally:
        worker.stop()
        producer.close()
        server.kill()
