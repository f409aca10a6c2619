"""Jobs on both backends: counts from items, idempotent outcomes, first finish wins."""

from __future__ import annotations

import pytest

from services.catalog.db.engine import Database
from services.catalog.repository import jobs
from services.catalog.repository.errors import JobNotFound, TooManyItems
from services.catalog.repository.session import read, transact


def _job(db: Database, **kwargs: object) -> int:
    fields: dict[str, object] = {"kind": "bulk_ingest", "total": 0}
    fields.update(kwargs)
    return transact(db, jobs.create_job, **fields).id


def test_create_and_get(db: Database) -> None:
    job = transact(db, jobs.create_job, kind="reindex", total=3, creator="admin",
                   params={"model": "dinov2_vitb14", "folder": "gallery/images"})
    got = read(db, jobs.get_job, job_id=job.id)
    assert (got.kind, got.status, got.total, got.done, got.failed, got.skipped) == (
        "reindex", "queued", 3, 0, 0, 0)
    assert got.params == {"model": "dinov2_vitb14", "folder": "gallery/images"}
    assert got.creator == "admin"
    assert got.started_at is None and got.finished_at is None
    with pytest.raises(JobNotFound) as info:
        read(db, jobs.get_job, job_id=job.id + 100)
    assert info.value.code == "job_not_found"


def test_items_start_the_job_and_grow_total(db: Database) -> None:
    job_id = _job(db, total=2)
    job = transact(db, jobs.register_items, job_id=job_id, image_ids=[5, 6, 7, 6],
                   max_items=100)
    assert (job.status, job.total) == ("running", 3)
    assert job.started_at is not None
    again = transact(db, jobs.register_items, job_id=job_id, image_ids=[5, 6], max_items=100)
    assert again.total == 3
    with pytest.raises(TooManyItems):
        transact(db, jobs.register_items, job_id=job_id, image_ids=list(range(5)), max_items=4)
    with pytest.raises(JobNotFound):
        transact(db, jobs.register_items, job_id=job_id + 1, image_ids=[1], max_items=10)


def test_outcomes_are_counted_once_from_items(db: Database) -> None:
    job_id = _job(db)
    transact(db, jobs.register_items, job_id=job_id, image_ids=[1, 2, 3, 4], max_items=100)
    for _ in range(3):  # a task retried three times reports the same outcome three times
        job = transact(db, jobs.record_item, job_id=job_id, image_id=1, state="done")
    assert (job.done, job.failed, job.skipped, job.total) == (1, 0, 0, 4)
    job = transact(db, jobs.record_item, job_id=job_id, image_id=2, state="failed",
                   error="not an image")
    job = transact(db, jobs.record_item, job_id=job_id, image_id=3, state="skipped")
    assert (job.done, job.failed, job.skipped) == (1, 1, 1)
    assert job.items_failed == [{"image_id": 2, "error": "not an image"}]
    # A retry that succeeds replaces the failure.
    job = transact(db, jobs.record_item, job_id=job_id, image_id=2, state="done")
    assert (job.done, job.failed, job.skipped) == (2, 0, 1)
    assert job.items_failed == []
    # An outcome for an item never registered registers it.
    job = transact(db, jobs.record_item, job_id=job_id, image_id=99, state="done")
    assert (job.done, job.total) == (3, 5)


def test_items_failed_is_limited(db: Database) -> None:
    job_id = _job(db)
    for image_id in range(5):
        transact(db, jobs.record_item, job_id=job_id, image_id=image_id, state="failed",
                 error=f"e{image_id}")
    job = read(db, jobs.get_job, job_id=job_id, failed_limit=2)
    assert job.failed == 5
    assert job.items_failed == [{"image_id": 0, "error": "e0"}, {"image_id": 1, "error": "e1"}]


def test_first_finish_wins(db: Database) -> None:
    job_id = _job(db, kind="delete", total=1)
    cancelled = transact(db, jobs.finish_job, job_id=job_id, status="cancelled",
                         error="cancelled by admin")
    assert cancelled.status == "cancelled"
    assert cancelled.finished_at is not None and cancelled.started_at is not None
    late = transact(db, jobs.finish_job, job_id=job_id, status="succeeded")
    assert (late.status, late.error, late.finished_at) == (
        "cancelled", "cancelled by admin", cancelled.finished_at)
    # A late outcome still counts but does not reopen the job.
    job = transact(db, jobs.record_item, job_id=job_id, image_id=1, state="done")
    assert (job.status, job.done) == ("cancelled", 1)


def test_list_jobs_newest_first_with_filters(db: Database) -> None:
    a = _job(db, kind="ingest")
    b = _job(db, kind="reindex")
    c = _job(db, kind="ingest")
    transact(db, jobs.finish_job, job_id=c, status="succeeded")
    assert [j.id for j in read(db, jobs.list_jobs)] == [c, b, a]
    assert [j.id for j in read(db, jobs.list_jobs, kind="ingest")] == [c, a]
    assert [j.id for j in read(db, jobs.list_jobs, status="queued")] == [b, a]
    assert [j.id for j in read(db, jobs.list_jobs, limit=1)] == [c]
