"""Job progress: item outcomes recorded on the catalog's job row, and the job finished when
every item is settled. Recording an item is idempotent in the catalog, so a retried task
never counts twice."""

from __future__ import annotations

import logging
from typing import Any

from services.common.vocabulary import JOB_FINISHED, JobStatus
from services.workers.tasks.context import TaskContext

logger = logging.getLogger(__name__)

# (image id, state: done | failed | skipped, message or None)
Outcome = tuple[int, str, str | None]


def record_item(ctx: TaskContext, job_id: int | None, image_id: int, state: str,
                error: str | None = None) -> None:
    """Record one item's outcome (done, failed, skipped) and finish the job if it was the last."""
    if job_id is None:
        return
    job = ctx.clients.catalog.record_item(job_id, image_id, state, error)
    ctx.heartbeat(job_id)
    finish_if_settled(ctx, job_id, job)


def record_items(ctx: TaskContext, job_id: int | None, items: list[Outcome]) -> None:
    """Record several items' outcomes, `page_size` a request (one for an ingest batch), then
    finish the job if they were the last."""
    if job_id is None or not items:
        return
    page = ctx.settings.page_size
    job = None
    for start in range(0, len(items), page):
        job = ctx.clients.catalog.record_items(job_id, items[start:start + page])
    ctx.heartbeat(job_id)
    finish_if_settled(ctx, job_id, job)


def finish_if_settled(ctx: TaskContext, job_id: int, job: dict[str, Any] | None = None) -> bool:
    """Finish the job once done + failed + skipped reaches its total; True if it is finished.
    `job` is its state as the catalog just returned it (read again when not given)."""
    if job is None:
        job = ctx.clients.catalog.get_job(job_id)
    if job is None:
        return True
    if job["status"] in JOB_FINISHED:
        return True
    total = int(job.get("total") or 0)
    settled = int(job.get("done") or 0) + int(job.get("failed") or 0) + int(
        job.get("skipped") or 0)
    if total <= 0 or settled < total:
        return False
    all_failed = int(job.get("failed") or 0) == total
    ctx.clients.catalog.finish_job(
        job_id, JobStatus.failed if all_failed else JobStatus.succeeded,
        "every item failed" if all_failed else None)
    ctx.forget_heartbeat(job_id)
    logger.info("job %s finished: %s of %s done", job_id, job.get("done"), total)
    return True
