"""Skipped job items keep their reason (a near duplicate skipped, an image deleted meanwhile),
listed on the job like failed items; a `done` item keeps no message."""

from __future__ import annotations

from services.catalog.db.engine import Database
from services.catalog.repository import jobs
from services.catalog.repository.session import read, transact


def test_skipped_items_keep_their_reason(db: Database) -> None:
    job_id = transact(db, jobs.create_job, kind="ingest", total=3).id
    transact(db, jobs.register_items, job_id=job_id, image_ids=[11, 12, 13], max_items=10)
    transact(db, jobs.record_item, job_id=job_id, image_id=12, state="skipped",
             error="near_duplicate_of=11 score=0.9712")
    transact(db, jobs.record_item, job_id=job_id, image_id=11, state="done",
             error="near_duplicate_of=5 score=0.9500")
    job = transact(db, jobs.record_item, job_id=job_id, image_id=13, state="skipped")
    assert (job.done, job.skipped) == (1, 2)
    assert job.items_skipped == [{"image_id": 12, "reason": "near_duplicate_of=11 score=0.9712"},
                                 {"image_id": 13, "reason": None}]
    assert job.items_failed == []
    # The same report again changes nothing; limits apply as to failed items.
    transact(db, jobs.record_item, job_id=job_id, image_id=12, state="skipped",
             error="near_duplicate_of=11 score=0.9712")
    assert read(db, jobs.get_job, job_id=job_id).items_skipped == job.items_skipped
    assert read(db, jobs.get_job, job_id=job_id, failed_limit=1).items_skipped == \
        job.items_skipped[:1]
    assert read(db, jobs.get_job, job_id=job_id, failed_limit=0).items_skipped == []
