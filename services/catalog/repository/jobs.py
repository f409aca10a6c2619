"""Jobs and their items: progress counted from items, so a retried task never counts twice.

Every write locks the job row first (SELECT ... FOR UPDATE on MySQL; SQLite writers are
serialised by BEGIN IMMEDIATE), which serialises the outcomes of one job and keeps its
counters equal to its items.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.orm import Session

from services.catalog.db.models import Job, JobItem
from services.catalog.db.types import utcnow
from services.catalog.repository.errors import DuplicateIds, JobNotFound, TooManyItems
from services.catalog.repository.tags import chunks
from services.common.vocabulary import JOB_FINISHED, ItemState, JobStatus


@dataclass(frozen=True)
class JobRecord:
    id: int
    kind: str
    status: str
    total: int
    done: int
    failed: int
    skipped: int
    creator: str | None
    params: dict[str, Any] | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    items_failed: list[dict[str, Any]] = field(default_factory=list)
    items_skipped: list[dict[str, Any]] = field(default_factory=list)


# Outcomes whose message is kept on the item: why it failed, why it was skipped (a near
# duplicate the uploader chose to skip, an image deleted meanwhile).
NOTED_STATES = (ItemState.failed, ItemState.skipped)


def _items(session: Session, job_id: int, state: str, limit: int
           ) -> list[tuple[int, str | None]]:
    rows = session.execute(
        sa.select(JobItem.image_id, JobItem.error)
        .where(JobItem.job_id == job_id, JobItem.state == state)
        .order_by(JobItem.image_id).limit(limit)
    )
    return [(int(image_id), message) for image_id, message in rows]


def _record(session: Session, job: Job, failed_limit: int) -> JobRecord:
    failed_items: list[dict[str, Any]] = []
    skipped_items: list[dict[str, Any]] = []
    if job.failed and failed_limit:
        failed_items = [{"image_id": image_id, "error": error}
                        for image_id, error in _items(session, job.id, "failed", failed_limit)]
    if job.skipped and failed_limit:
        skipped_items = [{"image_id": image_id, "reason": reason} for image_id, reason
                         in _items(session, job.id, "skipped", failed_limit)]
    return JobRecord(
        id=job.id, kind=job.kind, status=job.status, total=job.total, done=job.done,
        failed=job.failed, skipped=job.skipped, creator=job.creator, params=job.params,
        error=job.error, created_at=job.created_at, started_at=job.started_at,
        finished_at=job.finished_at, items_failed=failed_items, items_skipped=skipped_items,
    )


def _job(session: Session, job_id: int, *, lock: bool = False) -> Job:
    query = sa.select(Job).where(Job.id == job_id).execution_options(populate_existing=True)
    if lock:
        query = query.with_for_update()
    job = session.execute(query).scalar_one_or_none()
    if job is None:
        raise JobNotFound(f"job {job_id} does not exist", detail={"id": job_id})
    return job


def _start(job: Job) -> None:
    if job.status == JobStatus.queued:
        job.status = JobStatus.running
        job.started_at = utcnow()


def create_job(*, session: Session, kind: str, total: int = 0, creator: str | None = None,
               params: dict[str, Any] | None = None) -> JobRecord:
    job = Job(kind=kind, status=JobStatus.queued, total=total, done=0, failed=0, skipped=0,
              creator=creator, params=params, created_at=utcnow())
    session.add(job)
    session.commit()
    return _record(session, job, 0)


def get_job(*, session: Session, job_id: int, failed_limit: int = 100) -> JobRecord:
    return _record(session, _job(session, job_id), failed_limit)


def list_jobs(*, session: Session, kind: str | None = None, status: str | None = None,
              limit: int = 50) -> list[JobRecord]:
    """Newest first."""
    query = sa.select(Job)
    if kind is not None:
        query = query.where(Job.kind == kind)
    if status is not None:
        query = query.where(Job.status == status)
    rows = session.execute(query.order_by(Job.id.desc()).limit(limit)).scalars().all()
    return [_record(session, job, 0) for job in rows]


def _insert_missing_items(session: Session, rows: list[dict[str, Any]]) -> None:
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        session.execute(sqlite.insert(JobItem).on_conflict_do_nothing(), rows)
    else:
        stmt = mysql.insert(JobItem)
        session.execute(stmt.on_duplicate_key_update(job_id=stmt.inserted.job_id), rows)


def register_items(*, session: Session, job_id: int, image_ids: Sequence[int],
                   max_items: int, failed_limit: int = 100) -> JobRecord:
    """Add `pending` items (existing ones keep their state); the job starts running and its
    total grows to at least the number of items."""
    if len(image_ids) > max_items:
        raise TooManyItems(f"at most {max_items} items per request",
                           detail={"given": len(image_ids), "max": max_items})
    job = _job(session, job_id, lock=True)
    now = utcnow()
    unique = list(dict.fromkeys(image_ids))
    for part in chunks(unique):
        _insert_missing_items(
            session, [{"job_id": job_id, "image_id": i, "state": ItemState.pending, "error": None,
                       "updated_at": now} for i in part])
    count = session.execute(
        sa.select(sa.func.count()).select_from(JobItem).where(JobItem.job_id == job_id)
    ).scalar_one()
    job.total = max(job.total, int(count))
    _start(job)
    session.commit()
    return _record(session, job, failed_limit)


def record_item(*, session: Session, job_id: int, image_id: int, state: str,
                error: str | None = None, failed_limit: int = 100) -> JobRecord:
    """Record one item's outcome (`record_items` with one outcome)."""
    return record_items(session=session, job_id=job_id, outcomes=[(image_id, state, error)],
                        max_items=1, failed_limit=failed_limit)


# (image id, state: done | failed | skipped, message or None)
Outcome = tuple[int, str, str | None]


def record_items(*, session: Session, job_id: int, outcomes: Sequence[Outcome],
                 max_items: int, failed_limit: int = 100) -> JobRecord:
    """Record items' outcomes and recount the job from its items, once.

    Idempotent per item: the same report twice changes nothing; a later different report
    replaces the earlier one. Items not registered are added (the job's total grows to the
    number of items). Under the job row's lock, like every writer of the job's items.
    `TooManyItems` above `max_items`, `DuplicateIds` for an image given twice (which of its
    outcomes would count?), `JobNotFound`: nothing is recorded.
    """
    if len(outcomes) > max_items:
        raise TooManyItems(f"at most {max_items} items per request",
                           detail={"given": len(outcomes), "max": max_items})
    repeated = sorted(i for i, n in Counter(i for i, _, _ in outcomes).items() if n > 1)
    if repeated:
        raise DuplicateIds("each image may appear once in a batch of outcomes",
                           detail={"ids": repeated})
    job = _job(session, job_id, lock=True)
    wanted = [(image_id, state, error if state in NOTED_STATES else None)
              for image_id, state, error in outcomes]
    known: dict[int, tuple[str, str | None]] = {}
    for part in chunks([image_id for image_id, _, _ in wanted]):
        found = session.execute(
            sa.select(JobItem.image_id, JobItem.state, JobItem.error)
            .where(JobItem.job_id == job_id, JobItem.image_id.in_(part)))
        known.update((int(image_id), (state, error)) for image_id, state, error in found)
    now = utcnow()
    table = cast(sa.Table, JobItem.__table__)
    added = [{"job_id": job_id, "image_id": image_id, "state": state, "error": error,
              "updated_at": now} for image_id, state, error in wanted if image_id not in known]
    changed = [{"b_image_id": image_id, "b_state": state, "b_error": error, "b_updated_at": now}
               for image_id, state, error in wanted
               if image_id in known and known[image_id] != (state, error)]
    if added:
        session.execute(sa.insert(table), added)
    if changed:
        session.execute(
            sa.update(table)
            .where(table.c.job_id == job_id, table.c.image_id == sa.bindparam("b_image_id"))
            .values(state=sa.bindparam("b_state"), error=sa.bindparam("b_error"),
                    updated_at=sa.bindparam("b_updated_at")),
            changed,
        )
    counts: dict[str, int] = dict.fromkeys(tuple(ItemState), 0)
    rows = session.execute(
        sa.select(JobItem.state, sa.func.count()).where(JobItem.job_id == job_id)
        .group_by(JobItem.state)
    )
    for item_state, n in rows:
        counts[item_state] = int(n)
    job.done, job.failed, job.skipped = (counts[ItemState.done], counts[ItemState.failed],
                                         counts[ItemState.skipped])
    job.total = max(job.total, sum(counts.values()))
    _start(job)
    session.commit()
    return _record(session, job, failed_limit)


def finish_job(*, session: Session, job_id: int, status: str, error: str | None = None,
               failed_limit: int = 100) -> JobRecord:
    """Mark the job finished. The first finish wins: finishing a finished job (a retried
    task, or a job cancelled meanwhile) returns it unchanged."""
    job = _job(session, job_id, lock=True)
    if job.status not in JOB_FINISHED:
        now = utcnow()
        job.status = status
        job.error = error
        job.started_at = job.started_at or now
        job.finished_at = now
    session.commit()
    return _record(session, job, failed_limit)
