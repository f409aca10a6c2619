"""Job routes: create, items, item outcomes, finish, read."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query

from services.catalog.api.deps import DbDep, SettingsDep, page_limit
from services.catalog.repository import jobs as repo
from services.catalog.repository.jobs import JobRecord
from services.catalog.repository.session import read, transact
from services.catalog.schemas import (
    ItemReport,
    ItemReports,
    JobCreate,
    JobFinish,
    JobItems,
    JobList,
    JobOut,
)
from services.common.vocabulary import JobKind, JobStatus

router = APIRouter(tags=["jobs"])


def _out(record: JobRecord) -> JobOut:
    return JobOut.model_validate(asdict(record))


@router.post("/v1/jobs", status_code=201, response_model=JobOut)
def create_job(body: JobCreate, db: DbDep) -> JobOut:
    """A queued job."""
    return _out(transact(db, repo.create_job, kind=body.kind.value, total=body.total,
                         creator=body.creator, params=body.params))


@router.get("/v1/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: int, db: DbDep, settings: SettingsDep) -> JobOut:
    """One job with its counts and failed items."""
    return _out(read(db, repo.get_job, job_id=job_id,
                     failed_limit=settings.items_failed_limit))


@router.get("/v1/jobs", response_model=JobList)
def list_jobs(
    db: DbDep,
    settings: SettingsDep,
    kind: JobKind | None = None,
    status: JobStatus | None = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> JobList:
    """Jobs, newest first."""
    limit = page_limit(limit, settings.max_page_size)
    records = read(db, repo.list_jobs, kind=kind.value if kind else None,
                   status=status.value if status else None, limit=limit)
    return JobList(jobs=[_out(r) for r in records])


@router.post("/v1/jobs/{job_id}/items", response_model=JobOut)
def register_items(job_id: int, body: JobItems, db: DbDep, settings: SettingsDep) -> JobOut:
    """Register the job's items (pending); the job starts running."""
    return _out(transact(db, repo.register_items, job_id=job_id, image_ids=body.image_ids,
                         max_items=settings.max_lookup_ids,
                         failed_limit=settings.items_failed_limit))


@router.post("/v1/jobs/{job_id}/items/{image_id}", response_model=JobOut)
def record_item(job_id: int, image_id: int, body: ItemReport, db: DbDep,
                settings: SettingsDep) -> JobOut:
    """Record one item's outcome (idempotent); counts are recomputed from the items."""
    return _out(transact(db, repo.record_item, job_id=job_id, image_id=image_id,
                         state=body.state.value, error=body.error,
                         failed_limit=settings.items_failed_limit))


@router.post("/v1/jobs/{job_id}/outcomes", response_model=JobOut)
def record_items(job_id: int, body: ItemReports, db: DbDep, settings: SettingsDep) -> JobOut:
    """Record many items' outcomes in one transaction (each idempotent); one recount."""
    return _out(transact(db, repo.record_items, job_id=job_id,
                         outcomes=[(item.image_id, item.state.value, item.error)
                                   for item in body.items],
                         max_items=settings.max_lookup_ids,
                         failed_limit=settings.items_failed_limit))


@router.post("/v1/jobs/{job_id}/finish", response_model=JobOut)
def finish_job(job_id: int, body: JobFinish, db: DbDep, settings: SettingsDep) -> JobOut:
    """Finish the job; the first finish wins (a finished job is returned unchanged)."""
    return _out(transact(db, repo.finish_job, job_id=job_id, status=body.status.value,
                         error=body.error, failed_limit=settings.items_failed_limit))
