"""Upload handling: checked files -> stored files -> catalog rows -> one ingest job.

A file that fails its checks is listed as rejected and leaves nothing behind; when every
file of a request is rejected, the request fails with the first file's error (no row, no
file, no job). Exact duplicates (same sha256) return the existing image; one still pending
or failed is queued for ingest again (its earlier task may have died with a worker).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from gateway.deps import GatewayState, enqueue
from gateway.uploads import CheckedImage, check_image, discard, store
from services.common.errors import DomainError
from services.common.queue import INGEST

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


async def register(state: GatewayState, image: CheckedImage, *, tags: list[str],
                   uploader: str, outcome: UploadOutcome) -> None:
    """Store one checked image and create (or find) its catalog row."""
    key, new_file = await run_in_threadpool(store, state.images_dir, image)
    catalog = state.upstreams.catalog
    try:
        response = await catalog.arequest("POST", "/v1/images", json={
            "sha256": image.sha256, "original_filename": image.filename, "storage_key": key,
            "mime": image.info.mime, "width": image.info.width, "height": image.info.height,
            "bytes": len(image.data), "uploader": uploader, "tags": tags})
    except BaseException:
        if new_file:
            await run_in_threadpool(discard, state.images_dir, key)
        raise
    body = response.json()
    row, created = body["image"], bool(body["created"])
    status = row.get("status")
    if not created and status in ("deleting", "removed"):
        outcome.reject(image.filename, DomainError(
            f"image {row['id']} is being deleted; upload it again when that has finished",
            code="image_being_deleted", status=409))
        return
    if not created and tags:
        await catalog.arequest("POST", f"/v1/images/{row['id']}/tags", json={"tags": tags})
    if not created and status == "failed":
        # A failed image uploaded again is another try, not a duplicate.
        row = (await catalog.arequest("POST", f"/v1/images/{row['id']}/transition",
                                      json={"from": "failed", "to": "pending"})).json()
        created, status = True, "pending"
    # Uploading a pending image again re-drives it: ingest is idempotent, and the upload may
    # be what the user does because its first task was lost.
    if created or status == "pending":
        outcome.to_ingest.append(int(row["id"]))
    outcome.images.append({"id": row["id"], "original_filename": image.filename,
                           "status": status, "duplicate": not created})


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
    for image_id in image_ids:
        await enqueue(state, INGEST, {"image_id": image_id, "job_id": job_id,
                                      "on_near_duplicate": on_near_duplicate})
