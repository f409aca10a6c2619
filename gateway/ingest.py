"""Upload handling: checked files -> stored files -> catalog rows -> one ingest job.

A file that fails its checks is listed as rejected and leaves nothing behind; when every
file of a request is rejected, the request fails with the first file's error (no row, no
file, no job). Exact duplicates (same sha256) return the existing image; a failed one is
tried again, and one still pending is queued for ingest again (its earlier task may have
died with a worker). Checking, storing and registering a file is `services.common.gallery`,
the same code as the workers' bulk ingest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from fastapi import UploadFile
from starlette.concurrency import run_in_threadpool

from gateway.deps import GatewayState, enqueue
from gateway.schemas import RejectedFile, UploadAnswer, UploadedImage
from gateway.security import Principal
from gateway.uploads import clean_filename, read_limited
from services.common import gallery
from services.common.errors import DomainError
from services.common.gallery import (
    CatalogCall,
    CheckedImage,
    ImageBeingDeleted,
    StoredImage,
    check_image,
)
from services.common.queue import INGEST, ingest_messages
from services.common.vocabulary import JobKind, JobStatus

logger = logging.getLogger(__name__)


class UploadRejected(DomainError):
    """Every file of the request was rejected; status and code are the first file's."""


class TooManyFiles(DomainError):
    code = "too_many_files"
    status = 413


@dataclass
class UploadOutcome:
    images: list[UploadedImage] = field(default_factory=list)
    rejected: list[RejectedFile] = field(default_factory=list)
    to_ingest: list[int] = field(default_factory=list)
    first_error: DomainError | None = None

    def reject(self, filename: str, error: DomainError) -> None:
        self.rejected.append(RejectedFile(filename=filename, code=error.code,
                                          message=error.message))
        if self.first_error is None:
            self.first_error = error


async def check(state: GatewayState, data: bytes, filename: str) -> CheckedImage:
    return await run_in_threadpool(check_image, data, filename,
                                   max_bytes=state.settings.max_upload_bytes,
                                   max_pixels=state.settings.max_image_pixels)


def _catalog_call(state: GatewayState) -> CatalogCall:
    catalog = state.upstreams.catalog

    def call(method: str, path: str, body: dict[str, Any]) -> Any:
        return catalog.request(method, path, json=body).json()

    return call


def _index_tags(state: GatewayState) -> gallery.IndexTags:
    index = state.upstreams.index

    def put(image_ids: list[int], tags: list[list[str]]) -> None:
        index.request("PUT", "/v1/tags", json={"ids": image_ids, "tags": tags})

    return put


async def register(state: GatewayState, stored: list[StoredImage], *, tags: list[str],
                   uploader: str, outcome: UploadOutcome) -> None:
    """Create (or find) the catalog rows of stored files in one catalog request
    (`services.common.gallery`, the same steps as the workers' bulk ingest)."""
    results = await run_in_threadpool(gallery.register_many, _catalog_call(state),
                                      state.images_dir, stored, tags=tags, uploader=uploader,
                                      index_tags=_index_tags(state))
    for image, added in zip(stored, results, strict=True):
        if isinstance(added, ImageBeingDeleted):
            outcome.reject(image.filename, added)
            continue
        if added.to_ingest:
            outcome.to_ingest.append(int(added.image["id"]))
        outcome.images.append(UploadedImage(id=added.image["id"],
                                            original_filename=image.filename,
                                            status=added.image["status"],
                                            duplicate=added.duplicate))


async def start_job(state: GatewayState, kind: str, image_ids: list[int], *, creator: str,
                    params: dict[str, Any] | None = None) -> dict[str, Any]:
    """A job row with its items registered (finished at once when there is nothing to do)."""
    catalog = state.upstreams.catalog
    job: dict[str, Any] = (await catalog.arequest("POST", "/v1/jobs", json={
        "kind": kind, "total": len(image_ids), "creator": creator,
        "params": params or {}})).json()
    if image_ids:
        await catalog.arequest("POST", f"/v1/jobs/{job['id']}/items",
                               json={"image_ids": image_ids})
    elif kind in (JobKind.ingest, JobKind.delete):
        job = (await catalog.arequest("POST", f"/v1/jobs/{job['id']}/finish",
                                      json={"status": JobStatus.succeeded})).json()
    return job


async def enqueue_ingest(state: GatewayState, job_id: int, image_ids: list[int],
                         on_near_duplicate: str) -> None:
    """One ingest task per `workers.ingest_batch` images: a worker embeds them together."""
    batch = int(getattr(state.producer.conf, "imgsearch_ingest_batch", 0) or 8)
    for kwargs in ingest_messages(image_ids, job_id=job_id,
                                  on_near_duplicate=on_near_duplicate, batch=batch):
        await enqueue(state, INGEST, kwargs)


async def upload(state: GatewayState, principal: Principal, files: list[UploadFile], *,
                 tags: list[str], on_near_duplicate: str) -> UploadAnswer:
    """`POST /admin/images`: every file checked and stored (or rejected), the stored ones
    catalogued in one request, one ingest job for the new ones, their tasks queued."""
    limit = state.settings.max_files_per_request
    if len(files) > limit:
        raise TooManyFiles(f"{len(files)} files in one request; the limit is {limit}",
                           detail={"max_files_per_request": limit})
    outcome = UploadOutcome()
    stored: list[StoredImage] = []
    for file in files:
        filename = clean_filename(file.filename)
        try:
            data = await read_limited(file, state.settings.max_upload_bytes)
            checked = await check(state, data, filename)
        except DomainError as exc:
            outcome.reject(filename, exc)
            continue
        # Stored at once, so only one file's bytes are held at a time.
        stored.append(await run_in_threadpool(gallery.store_checked, state.images_dir, checked))
        del data, checked
    await register(state, stored, tags=tags, uploader=principal.username, outcome=outcome)
    if not outcome.images and outcome.first_error is not None:
        first = outcome.first_error
        raise UploadRejected(first.message, code=first.code, status=first.status,
                             detail={"rejected": [r.model_dump() for r in outcome.rejected]})
    job = await start_job(state, JobKind.ingest, outcome.to_ingest, creator=principal.username,
                          params={"on_near_duplicate": on_near_duplicate,
                                  "image_ids": outcome.to_ingest})
    await enqueue_ingest(state, int(job["id"]), outcome.to_ingest, on_near_duplicate)
    logger.info("upload accepted", extra={"job_id": job["id"], "new": len(outcome.to_ingest),
                                          "rejected": len(outcome.rejected)})
    return UploadAnswer(job_id=job["id"], images=outcome.images, rejected=outcome.rejected)
