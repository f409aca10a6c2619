"""End to end through real processes: catalog on MariaDB, index, embedding, Redis broker and
`imgsearch worker`. Bulk ingest, delete, and a worker killed -9 over and over during a bulk
ingest: every image indexed exactly once, catalog = index, no orphan files.

A kill -9 can lose one message outright: kombu's Redis transport pops a message (BRPOP) and
only then records it as unacknowledged, so a worker killed between the two takes it with it.
The catalog still holds the row as pending, and reconcile (celery beat in a deployment)
re-queues it once it is older than `pending_timeout_s`; the kill test runs reconcile as beat
would when the job stalls, and needs it only when such a message was lost."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from services.common import queue
from services.common.vocabulary import JOB_FINISHED
from tests.workers.checks import (
    assert_consistent,
    assert_gallery_indexed,
    gallery,
    gallery_ids,
    wait_job,
    wait_job_reconciling,
    wait_progress,
)
from tests.workers.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def model_calls(stack: Stack) -> tuple[float, float]:
    """(model calls, images embedded) of the embedding service so far (its /metrics)."""
    import re

    import httpx

    text = httpx.get(stack.embedding.url + "/metrics", timeout=10).text
    values = []
    for name in ("embedding_batch_size_count", "embedding_images_total"):
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        values.append(float(match.group(1)) if match else 0.0)
    return values[0], values[1]


def test_bulk_ingest_then_delete(shared_stack: Stack, tmp_path: Path) -> None:
    stack = shared_stack
    before = len(stack.catalog_ids("indexed"))
    folder = gallery(tmp_path / "in", 30)
    worker = stack.worker(tmp_path).start()
    calls, images = model_calls(stack)
    try:
        job_id = stack.new_job("bulk_ingest", {"folder": str(folder)})
        stack.enqueue(queue.BULK_INGEST, {"job_id": job_id, "folder": str(folder)})
        assert_gallery_indexed(stack, folder, wait_job(stack, job_id, 240))
        assert_consistent(stack, before + 30)
        # Embedded in batches (tasks of 8 images), not one model call per image.
        calls_after, images_after = model_calls(stack)
        assert images_after - images == 30
        assert calls_after - calls <= 6, (calls, calls_after)

        doomed = gallery_ids(stack, folder)[:5]
        marked = stack.call(stack.catalog, "POST", "/v1/images/transition",
                            json={"ids": doomed, "from": ["indexed"], "to": "deleting"})
        assert sorted(marked["changed"]) == doomed
        delete_job = stack.new_job("delete", {"image_ids": doomed})
        stack.call(stack.catalog, "POST", f"/v1/jobs/{delete_job}/items",
                   json={"image_ids": doomed})
        for image_id in doomed:
            stack.enqueue(queue.DELETE, {"image_id": image_id, "job_id": delete_job})
        job = wait_job(stack, delete_job, 120)
        assert job["status"] == "succeeded" and job["done"] == 5, job
        assert_consistent(stack, before + 25)
        assert not set(doomed) & set(stack.index_ids())
    finally:
        worker.stop()


def test_worker_killed_repeatedly_during_bulk_ingest(shared_stack: Stack, tmp_path: Path,
                                                     ) -> None:
    stack = shared_stack
    before = len(stack.catalog_ids("indexed"))
    # Enough images that the ingest outlasts the kills on a fast machine: with the catalog
    # rows created a page at a time, 200 took about a second in all on a 2-core Zen 5.
    count = 1000
    folder = gallery(tmp_path / "in", count, offset=1000)
    rng = random.Random(4)
    env = {**stack.env, "IMGSEARCH_WORKERS_PENDING_TIMEOUT_S": "10"}
    worker = stack.worker(tmp_path, env).start()
    try:
        job_id = stack.new_job("bulk_ingest", {"folder": str(folder)})
        stack.enqueue(queue.BULK_INGEST, {"job_id": job_id, "folder": str(folder)})
        # The first kill lands within a second (the bulk task storing and registering
        # files, or the first ingests); the next two after a random share of the ingests,
        # whatever step each running task is at.
        time.sleep(rng.uniform(0.2, 1.0))
        moments = sorted(rng.sample(range(count // 4, count * 3 // 4), 2))
        for settled in (None, *moments):
            if settled is not None:
                job = wait_progress(stack, job_id, settled, timeout=300)
                assert job["status"] not in JOB_FINISHED, "the ingest finished before the kill"
                time.sleep(rng.uniform(0.0, 1.0))
            worker.kill()
            worker = stack.worker(tmp_path, env).start()
        # Redelivery (visibility timeout 5 s, a scan every 5 s) settles everything a killed
        # worker had taken well within the 30 s; a longer stall means a lost message.
        job, reconciles = wait_job_reconciling(stack, job_id, 600, stall_s=30)
        print(f"reconciles needed: {reconciles}")
        assert_gallery_indexed(stack, folder, job)
        assert_consistent(stack, before + count)
    finally:
        worker.stop()
