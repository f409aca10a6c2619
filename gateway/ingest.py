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

from starlette.concurrency import run_in_threadpool

from gateway.deps import GatewayState, enqueue
from services.common import gallery
from services.common.errors import DomainError
from services.common.gallery import CatalogCall, CheckedImage, ImageBeingDeleted, check_image
from services.common.queue import INGEST, ingest_messages

logger = logging.getLogger(__name__)


class UploadRejected(DomainError):
    """Every file of the request was rejected; status and code are the first file's."""


@dataclass
class UploadOutcome:
    images: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    to_ingest: list[int] = field(default_factory=list)
    first_error: DomainError | None = None

    def reject(self, filename: str, error: DomainError) -> None:
        self.rejected.append({"filename": filename, "code": error.code,
                              "message": error.message})
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

    def put(image_id: int, tags: list[str]) -> None:
        index.request("PUT", "/v1/tags", json={"ids": [image_id], "tags": [tags]})

    return put


async def register(state: GatewayState, image: CheckedImage, *, tags: list[str],
                   uploader: str, outcome: UploadOutcome) -> None:
    """Store one checked image and create (or find) its catalog row (`services.common.gallery`,
    the same steps as the workers' bulk ingest)."""
    try:
        added = await run_in_threadpool(gallery.register, _catalog_call(state), state.images_dir,
                                        image, tags=tags, uploader=uploader,
                                        index_tags=_index_tags(state))
    except ImageBeingDeleted as exc:
        outcome.reject(image.filename, exc)
        return
    if added.to_ingest:
        outcome.to_ingest.append(int(added.image["id"]))
    outcome.images.append({"id": added.image["id"], "original_filename": image.filename,
                           "status": added.image.get("status"), "duplicate": added.duplicate})


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
    elif kind in ("ingest", "delete"):
        job = (await catalog.arequest("POST", f"/v1/jobs/{job['id']}/finish",
                                      json={"status": "succeeded"})).json()
    return job


async def enqueue_ingest(state: GatewayState, job_id: int, image_ids: list[int],
                         on_near_duplicate: str) -> None:
    """One ingest task per `workers.ingest_batch` images: a worker embeds them together."""
    batch = int(getattr(state.producer.conf, "imgsearch_ingest_batch", 0) or 8)
    for kwargs in ingest_messages(image_ids, job_id=job_id,
                                  on_near_duplicate=on_near_duplicate, batch=batch):
        await enqueue(state, INGEST, kwargs)
