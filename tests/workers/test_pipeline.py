"""End to end through real processes: catalog on MariaDB, index, embedding, Redis broker and
`imgsearch worker`. Bulk ingest, delete, and a worker killed -9 over and over during a bulk
ingest: every image indexed exactly once, catalog = index, no orphan files."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.common import queue
from tests.helpers.worker import WorkerProcess
from tests.workers.images import make_png
from tests.workers.stack import Stack, running_stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def stack(tmp_path: Path, data_dir: Path, internal_token: str, mysql_database_url: str,
          redis_url: str, redis_prefix: str) -> Iterator[Stack]:
    with running_stack(data_dir=data_dir, log_dir=tmp_path, token=internal_token,
                       database_url=mysql_database_url, broker_url=redis_url,
                       redis_prefix=redis_prefix) as s:
        yield s


def gallery(folder: Path, count: int, offset: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"img{i:04d}.png").write_bytes(make_png(offset + i, 48))
    return folder


def wait_job(stack: Stack, job_id: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    job = stack.job(job_id)
    while time.monotonic() < deadline:
        job = stack.job(job_id)
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.5)
    raise TimeoutError(f"job {job_id} not finished: {job}")


def stored_files(root: Path) -> set[str]:
    return {p.name for p in root.rglob("*") if p.is_file() and not p.name.startswith(".tmp")}


def assert_consistent(stack: Stack, expected: int) -> None:
    indexed = stack.catalog_ids("indexed")
    index = stack.index_ids()
    assert len(indexed) == expected
    assert sorted(index) == indexed and len(set(index)) == len(index)
    assert stack.catalog_ids("pending") == []
    rows = stack.catalog_rows("indexed")
    assert stored_files(stack.data_dir / "images") == {
        Path(r["storage_key"]).name for r in rows}
    assert stored_files(stack.data_dir / "thumbs") == {
        Path(r["thumbnail_key"]).name for r in rows}


def test_bulk_ingest_then_delete(stack: Stack, tmp_path: Path) -> None:
    folder = gallery(tmp_path / "in", 30)
    worker = WorkerProcess(stack.env, tmp_path, concurrency=2).start()
    try:
        job_id = stack.new_job("bulk_ingest", {"folder": str(folder)})
        stack.enqueue(queue.BULK_INGEST, {"job_id": job_id, "folder": str(folder)})
        job = wait_job(stack, job_id, 240)
        assert job["status"] == "succeeded" and job["done"] == 30 and job["failed"] == 0
        assert_consistent(stack, 30)

        ids = stack.catalog_ids("indexed")
        doomed = ids[:5]
        marked = stack.call(stack.catalog, "POST", "/v1/images/transition",
                            json={"ids": doomed, "from": ["indexed"], "to": "deleting"})
        assert sorted(marked["changed"]) == doomed
        delete_job = stack.new_job("delete", {"image_ids": doomed})
        stack.call(stack.catalog, "POST", f"/v1/jobs/{delete_job}/items",
                   json={"image_ids": doomed})
        for image_id in doomed:
            stack.enqueue(queue.DELETE, {"image_id": image_id, "job_id": delete_job})
        assert wait_job(stack, delete_job, 120)["status"] == "succeeded"
        assert_consistent(stack, 25)
        assert not set(doomed) & set(stack.index_ids())
    finally:
        worker.stop()


def test_worker_killed_repeatedly_during_bulk_ingest(stack: Stack, tmp_path: Path) -> None:
    count = 200
    folder = gallery(tmp_path / "in", count, offset=1000)
    rng = random.Random(4)
    worker = WorkerProcess(stack.env, tmp_path, concurrency=2).start()
    try:
        job_id = stack.new_job("bulk_ingest", {"folder": str(folder)})
        stack.enqueue(queue.BULK_INGEST, {"job_id": job_id, "folder": str(folder)})
        for _ in range(4):
            time.sleep(rng.uniform(1.0, 5.0))
            worker.kill()
            worker = WorkerProcess(stack.env, tmp_path, concurrency=2).start()
        job = wait_job(stack, job_id, 600)
        assert job["status"] == "succeeded", job
        assert job["done"] == count and job["failed"] == 0
        assert_consistent(stack, count)
    finally:
        worker.stop()
