"""`reconcile()`: the catalog is the source of truth; the index and the queue are made to agree.

- a vector whose row is missing, deleting, removed or failed is removed from the index
  (pending rows keep theirs: an ingest may be between its upsert and its transition);
- an indexed row without a vector is re-queued for ingest, which re-embeds it and upserts
  (the row stays indexed: no transition is needed, so search never loses it by our doing);
- an indexed row whose tags the index holds otherwise gets the catalog's tags pushed to the
  index (search filters by the index's copy; a tag change that raced an ingest, or that a
  caller of the catalog's tag routes did not pass on, is repaired here);
- a pending row whose task is gone is re-queued for ingest (its message was lost: a broker
  restarted empty, a worker killed on a broker without redelivery). Gone means: no task holds
  the image's lease (a running task renews it) and the row is `pending_grace_s` old with the
  queue empty, or `pending_timeout_s` old whatever the queue holds;
- a deleting row whose task is gone, likewise, is re-queued for delete;
- a queued or running job nobody has worked on (its heartbeat, renewed by its running tasks,
  is as old as the rows above) is re-driven: its task is enqueued again with the job's own
  params (every task is idempotent);
- the embedded SQLite broker's delivered messages are deleted.
The first two (the vector scans) are the full pass; the rest is the light recovery pass.
Celery beat runs the light pass every `recover_every_s` and the full one every
`reconcile_every_s`; `imgsearch reconcile` runs the full one on demand.
"""

from __future__ import annotations

import logging
from typing import Any

from services.common import queue
from services.common.vocabulary import JOB_ACTIVE, ImageStatus, JobStatus
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


def reconcile(ctx: TaskContext, job_id: int | None = None, full: bool = True
              ) -> dict[str, int]:
    """Repair drift between catalog, index and queue; returns what was done, by kind.
    `full=False`: only the light pass (stuck rows and jobs, the broker's delivered messages)."""
    report = {"orphan_vectors": 0, "missing_vectors": 0, "tags_synced": 0, "stale_pending": 0,
              "stale_deleting": 0, "redriven_jobs": 0, "broker_messages_purged": 0}
    if full:
        report["orphan_vectors"] = _remove_orphan_vectors(ctx)
        report["missing_vectors"], report["tags_synced"] = _requeue_missing_vectors(ctx)
    depth = ctx.queue_depth()
    # Jobs first: their images are re-queued with the job id (so the job completes) and
    # leased, which the row passes then leave alone.
    report["redriven_jobs"] = _redrive_jobs(ctx, exclude=job_id, depth=depth)
    report["stale_pending"] = _redrive_stuck(ctx, ImageStatus.pending, queue.INGEST, depth)
    report["stale_deleting"] = _redrive_stuck(ctx, ImageStatus.deleting, queue.DELETE, depth)
    report["broker_messages_purged"] = queue.purge_consumed(queue.broker_url(ctx.settings))
    if any(report.values()) or full:
        logger.info("reconcile: %s", report)
    if job_id is not None:
        ctx.clients.catalog.finish_job(job_id, JobStatus.succeeded)
    return report


def _quiet_for(ctx: TaskContext, depth: int | None) -> float:
    """Seconds without sign of life after which work counts as lost: with messages waiting
    (or an unknown queue), its message may be among them, so the long timeout."""
    timeout = ctx.settings.pending_timeout_s
    return min(timeout, ctx.settings.pending_grace_s) if depth == 0 else timeout


def _redrive_stuck(ctx: TaskContext, status: str, task: str, depth: int | None) -> int:
    """Re-queue rows in `status` whose task is neither running nor possibly still queued."""
    settings = ctx.settings
    older_than = _quiet_for(ctx, depth)
    redriven = 0
    for image in ctx.clients.catalog.stale(status=status, older_than_s=older_than,
                                           limit=settings.page_size):
        image_id = int(image["id"])
        if ctx.image_leased(image_id):
            continue
        ctx.enqueue(task, {"image_id": image_id})
        # Give the new message its chance before another re-drive.
        ctx.lease_image(image_id, settings.pending_grace_s)
        logger.info("reconcile: re-queued %s image %s (%s)", status, image_id,
                    "queue empty" if depth == 0 else "past the timeout")
        redriven += 1
    return redriven


def _remove_orphan_vectors(ctx: TaskContext) -> int:
    removed = 0
    after: int | None = None
    while True:
        ids, after_next = ctx.clients.index.ids_page(after, ctx.settings.page_size)
        if ids:
            rows = {int(r["id"]): r["status"] for r in ctx.clients.catalog.lookup(ids)}
            kept = (ImageStatus.indexed, ImageStatus.pending)
            orphans = [i for i in ids if rows.get(i) not in kept]
            if orphans:
                ctx.clients.index.remove(orphans)
                removed += len(orphans)
                logger.info("reconcile: removed %d orphan vectors", len(orphans))
        if after_next is None or not ids:
            return removed
        after = after_next


def _requeue_missing_vectors(ctx: TaskContext) -> tuple[int, int]:
    """Walk the indexed rows: re-queue those without a vector, push the catalog's tags of
    those whose tags the index holds otherwise. Returns (re-queued, tags synced)."""
    requeued = synced = 0
    after: str | None = None
    while True:
        images, after = ctx.clients.catalog.list_images(status=ImageStatus.indexed,
                                                        limit=ctx.settings.page_size,
                                                        after=after)
        if not images:
            return requeued, synced
        ids = [int(image["id"]) for image in images]
        present = ctx.clients.index.present(ids)
        for image_id in ids:
            if image_id not in present:
                ctx.enqueue(queue.INGEST, {"image_id": image_id})
                requeued += 1
        held = ctx.clients.index.tags_of(ids)
        stale = [(int(image["id"]), sorted(image.get("tags") or [])) for image in images
                 if sorted(image.get("tags") or []) != sorted(held.get(int(image["id"]), []))]
        if stale:
            ctx.clients.index.set_tags([i for i, _ in stale], [t for _, t in stale])
            synced += len(stale)
            logger.info("reconcile: tags of %d images pushed to the index", len(stale))
        if after is None:
            return requeued, synced


def _redrive_jobs(ctx: TaskContext, exclude: int | None, depth: int | None) -> int:
    """Re-drive queued or running jobs nobody has worked on lately (a running task renews
    its job's heartbeat, so a quiet job's task is gone)."""
    redriven = 0
    timeout = _quiet_for(ctx, depth)
    for status in JOB_ACTIVE:
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
                    ctx.lease_image(int(image_id), ctx.settings.pending_grace_s)
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
