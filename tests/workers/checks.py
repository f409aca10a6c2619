"""What the pipeline tests prove after each run: jobs finished, catalog and index in exact
agreement (every indexed row has exactly one vector, no vector without an indexed row, no
pending row left), every image of a gallery indexed, and no orphan file."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from services.common import queue
from services.common.vocabulary import JOB_FINISHED
from tests.workers.images import make_png
from tests.workers.stack import Stack


def gallery(folder: Path, count: int, offset: int = 0) -> Path:
    """`count` distinct PNGs (seeds offset .. offset + count - 1) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"img{i:04d}.png").write_bytes(make_png(offset + i, 48))
    return folder


def wait_job(stack: Stack, job_id: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    job = stack.job(job_id)
    while time.monotonic() < deadline:
        job = stack.job(job_id)
        if job["status"] in JOB_FINISHED:
            return job
        time.sleep(0.5)
    raise TimeoutError(f"job {job_id} not finished: {job}")


def reconcile(stack: Stack, producer: Any = None, timeout: float = 120) -> dict[str, Any]:
    """What `imgsearch reconcile` does through the gateway: a reconcile job, then its task."""
    job_id = stack.new_job("reconcile")
    stack.enqueue(queue.RECONCILE, {"job_id": job_id}, producer=producer)
    return wait_job(stack, job_id, timeout)


def wait_job_reconciling(stack: Stack, job_id: int, timeout: float, stall_s: float,
                         ) -> tuple[dict[str, Any], int]:
    """Wait for the job to finish; whenever it has settled no item for `stall_s`, run a
    reconcile, as celery beat would in a deployment. Returns the job and how many reconciles
    it took (the worker's `pending_timeout_s` must be below `stall_s` for them to act)."""
    deadline = time.monotonic() + timeout
    reconciles = 0
    job = stack.job(job_id)
    seen, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        job = stack.job(job_id)
        if job["status"] in JOB_FINISHED:
            return job, reconciles
        settled = job["done"] + job["failed"] + job["skipped"]
        if settled != seen:
            seen, since = settled, time.monotonic()
        elif time.monotonic() - since > stall_s:
            assert reconcile(stack)["status"] == "succeeded"
            reconciles += 1
            since = time.monotonic()
        time.sleep(0.5)
    raise TimeoutError(f"job {job_id} not finished after {reconciles} reconciles: {job}")


def wait_progress(stack: Stack, job_id: int, settled: int, timeout: float) -> dict[str, Any]:
    """Wait until at least `settled` items of the job are done, failed or skipped."""
    deadline = time.monotonic() + timeout
    job = stack.job(job_id)
    while time.monotonic() < deadline:
        job = stack.job(job_id)
        if job["done"] + job["failed"] + job["skipped"] >= settled or job["status"] in JOB_FINISHED:
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} below {settled} settled items: {job}")


def stored_files(root: Path) -> set[str]:
    return {p.name for p in root.rglob("*") if p.is_file() and not p.name.startswith(".tmp")}


def gallery_ids(stack: Stack, folder: Path) -> list[int]:
    """Ids of the indexed rows holding the files of `folder` (matched by sha256)."""
    wanted = {hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    return sorted(int(r["id"]) for r in stack.catalog_rows("indexed") if r["sha256"] in wanted)


def assert_consistent(stack: Stack, total: int) -> None:
    """Catalog and index agree exactly, with `total` indexed images and no orphan file."""
    indexed = stack.catalog_ids("indexed")
    index = stack.index_ids()
    assert len(set(index)) == len(index), "an id is listed twice by the index"
    assert sorted(index) == indexed
    assert len(indexed) == total
    assert stack.present(indexed) == set(indexed)
    assert stack.catalog_ids("pending") == []
    rows = stack.catalog_rows("indexed")
    assert stored_files(stack.data_dir / "images") == {
        Path(r["storage_key"]).name for r in rows}
    assert stored_files(stack.data_dir / "thumbs") == {
        Path(r["thumbnail_key"]).name for r in rows}


def assert_gallery_indexed(stack: Stack, folder: Path, job: dict[str, Any]) -> None:
    """The job succeeded with one done item per file and each file's image has a vector."""
    count = len(list(folder.iterdir()))
    assert job["status"] == "succeeded", job
    assert (job["total"], job["done"], job["failed"], job["skipped"]) == (count, count, 0, 0)
    ids = gallery_ids(stack, folder)
    assert len(ids) == count
    assert stack.present(ids) == set(ids)
