"""`reconcile()`: the catalog is the source of truth; the index and the queue are made to agree.

- a vector whose row is missing, deleting, removed or failed is removed from the index
  (pending rows keep theirs: an ingest may be between its upsert and its transition);
- an indexed row without a vector is re-queued for ingest, which re-embeds it and upserts
  (the row stays indexed: no transition is needed, so search never loses it by our doing);
- a pending row older than `pending_timeout_s` is re-queued for ingest (its message was lost:
  a broker restarted empty, a worker killed on a broker without redelivery);
- a deleting row older than `pending_timeout_s` is re-queued for delete;
- a queued or running job nobody has worked on for `pending_timeout_s` is re-driven: its task is
  enqueued again with the job's own params (every task is idempotent).
Runs from celery beat every `reconcile_every_s` and on demand (`imgsearch reconcile`).
"""

from __future__ import annotations

import logging
from typing import Any

from services.common import queue
from services.workers.tasks.context import TaskContext

logger = logging.getLogger(__name__)

# kwargs each re-driven job kind accepts from its params (anything else in params is ignored)
_REDRIVE: dict[str, tuple[str, tuple[str, ...]]] = {
    "bulk_ingest": (queue.BULK_INGEST,
                    ("folder", "paths", "tags", "uploader", "on_near_duplicate")),
    "reindex": (queue.REINDEX, ()),
}
# Jobs of one task per image: params {"image_ids": [...], ...} (what the gateway records).
_PER_IMAGE: dict[str, tuple[str, tuple[str, ...]]] = {
    "ingest": (queue.INGEST, ("on_near_duplicate",)),
    "delete": (queue.DELETE, ()),
}


def reconcile(ctx: TaskContext, job_id: int | None = None) -> dict[str, int]:
    """Repair drift between catalog, index and queue; returns what was done, by kind."""
    report = {"orphan_vectors": 0, "missing_vectors": 0, "stale_pending": 0,
              "stale_deleting": 0, "redriven_jobs": 0}
    report["orphan_vectors"] = _remove_orphan_vectors(ctx)
    report["missing_vectors"] = _requeue_missing_vectors(ctx)
    timeout = ctx.settings.pending_timeout_s
    for image in ctx.clients.catalog.stale(status="pending", older_than_s=timeout,
                                           limit=ctx.settings.page_size):
        ctx.enqueue(queue.INGEST, {"image_id": int(image["id"])})
        report["stale_pending"] += 1
    for image in ctx.clients.catalog.stale(status="deleting", older_than_s=timeout,
                                           limit=ctx.settings.page_size):
        ctx.enqueue(queue.DELETE, {"image_id": int(image["id"])})
        report["stale_deleting"] += 1
    report["redriven_jobs"] = _redrive_jobs(ctx, exclude=job_id)
    logger.info("reconcile: %s", report)
    if job_id is not None:
        ctx.clients.catalog.finish_job(job_id, "succeeded")
    return report


def _remove_orphan_vectors(ctx: TaskContext) -> int:
    removed = 0
    after: int | None = None
    while True:
        ids, after_next = ctx.clients.index.ids_page(after, ctx.settings.page_size)
        if ids:
            rows = {int(r["id"]): r["status"] for r in ctx.clients.catalog.lookup(ids)}
            orphans = [i for i in ids if rows.get(i) not in ("indexed", "pending")]
            if orphans:
                ctx.clients.index.remove(orphans)
                removed += len(orphans)
                logger.info("reconcile: removed %d orphan vectors", len(orphans))
        if after_next is None or not ids:
            return removed
        after = after_next


def _requeue_missing_vectors(ctx: TaskContext) -> int:
    requeued = 0
    after: str | None = None
    while True:
        images, after = ctx.clients.catalog.list_images(status="indexed",
                                                        limit=ctx.settings.page_size,
                                                        after=after)
        if not images:
            return requeued
        ids = [int(image["id"]) for image in images]
        present = ctx.clients.index.present(ids)
        for image_id in ids:
            if image_id not in present:
                ctx.enqueue(queue.INGEST, {"image_id": image_id})
                requeued += 1
        if after is None:
            return requeued


def _redrive_jobs(ctx: TaskContext, exclude: int | None) -> int:
    redriven = 0
    timeout = ctx.settings.pending_timeout_s
    for status in ("queued", "running"):
        for job in ctx.clients.catalog.list_jobs(status=status):
            job_id = int(job["id"])
            if job_id == exclude or job["kind"] not in (*_REDRIVE, *_PER_IMAGE):
                continue
            age = ctx.heartbeat_age(job_id)
            if age is not None and age < timeout:
                continue
            if age is None and not _older_than(job, timeout):
                continue
            params: dict[str, Any] = job.get("params") or {}
            ctx.heartbeat(job_id)  # one re-drive per timeout, not one per reconcile run
            if job["kind"] in _PER_IMAGE:
                name, keys = _PER_IMAGE[job["kind"]]
                extra = {k: params[k] for k in keys if k in params}
                for image_id in params.get("image_ids") or []:
                    ctx.enqueue(name, {"image_id": int(image_id), "job_id": job_id, **extra})
            else:
                name, keys = _REDRIVE[job["kind"]]
                kwargs = {k: params[k] for k in keys if k in params}
                ctx.enqueue(name, {"job_id": job_id, **kwargs})
            logger.info("reconcile: re-drove %s job %s", job["kind"], job_id)
            redriven += 1
    return redriven


def _older_than(job: dict[str, Any], seconds: float) -> bool:
    from datetime import UTC, datetime

    stamp = job.get("started_at") or job.get("created_at")
    if not stamp:
        return True
    try:
        when = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return True
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (datetime.now(UTC) - when).total_seconds() >= seconds
