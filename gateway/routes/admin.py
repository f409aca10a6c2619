"""Admin routes: upload, delete, reindex, reconcile, stats, users. Always the admin role."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Path, Response, UploadFile
from pydantic import BaseModel, Field

from gateway.deps import AdminUser, StateDep, enqueue
from gateway.ingest import (
    UploadOutcome,
    UploadRejected,
    check,
    enqueue_ingest,
    register,
    start_job,
)
from gateway.routes._forms import as_tags
from gateway.uploads import clean_filename, read_limited
from services.common.errors import DomainError, NotFound
from services.common.queue import DELETE, RECONCILE, REINDEX
from services.common.vocabulary import Role

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/admin", tags=["admin"])

DELETABLE = ["indexed", "failed", "pending"]


class TooManyFiles(DomainError):
    code = "too_many_files"
    status = 413


@router.post("/images", status_code=202)
async def upload_images(
    state: StateDep,
    principal: AdminUser,
    file: list[UploadFile] = File(..., description="one or more images"),
    tags: str | None = Form(None, description="comma separated"),
    on_near_duplicate: Literal["keep", "skip"] = Form("keep"),
) -> dict[str, Any]:
    """Upload images: stored, catalogued and queued for indexing (202 with the job id)."""
    limit = state.settings.max_files_per_request
    if len(file) > limit:
        raise TooManyFiles(f"{len(file)} files in one request; the limit is {limit}",
                           detail={"max_files_per_request": limit})
    tag_list = as_tags(tags)
    outcome = UploadOutcome()
    for upload in file:
        filename = clean_filename(upload.filename)
        try:
            data = await read_limited(upload, state.settings.max_upload_bytes)
            checked = await check(state, data, filename)
        except DomainError as exc:
            outcome.reject(filename, exc)
            continue
        await register(state, checked, tags=tag_list, uploader=principal.username,
                       outcome=outcome)
    if not outcome.images and outcome.first_error is not None:
        first = outcome.first_error
        raise UploadRejected(first.message, code=first.code, status=first.status,
                             detail={"rejected": outcome.rejected})
    job = await start_job(state, "ingest", outcome.to_ingest, creator=principal.username,
                          params={"on_near_duplicate": on_near_duplicate,
                                  "image_ids": outcome.to_ingest})
    await enqueue_ingest(state, int(job["id"]), outcome.to_ingest, on_near_duplicate)
    logger.info("upload accepted", extra={"job_id": job["id"], "new": len(outcome.to_ingest),
                                          "rejected": len(outcome.rejected)})
    return {"job_id": job["id"], "images": outcome.images, "rejected": outcome.rejected}


class DeleteMany(BaseModel):
    ids: list[int] = Field(..., min_length=1, max_length=1000)


async def _delete(state: Any, principal: Any, ids: list[int]) -> dict[str, Any]:
    marked: list[int] = (await state.upstreams.catalog.arequest(
        "POST", "/v1/images/transition",
        json={"ids": ids, "from": DELETABLE, "to": "deleting"})).json()["changed"]
    job = await start_job(state, "delete", marked, creator=principal.username,
                          params={"ids": marked})
    for image_id in marked:
        await enqueue(state, DELETE, {"image_id": image_id, "job_id": job["id"]})
    return {"job_id": job["id"], "ids": marked}


@router.delete("/images/{image_id}", status_code=202)
async def delete_image(image_id: int, state: StateDep, principal: AdminUser) -> dict[str, Any]:
    """Delete one image: hidden from search at once, then file, row and vector removed."""
    image = await state.upstreams.get_image(image_id)
    if image.get("status") == "removed":
        raise NotFound(f"image {image_id} does not exist", code="image_not_found")
    result = await _delete(state, principal, [image_id])
    return {"job_id": result["job_id"]}


@router.post("/images/delete", status_code=202)
async def delete_images(body: DeleteMany, state: StateDep,
                        principal: AdminUser) -> dict[str, Any]:
    """Delete many images (ids that do not exist or are already being deleted are skipped)."""
    ids = list(dict.fromkeys(i for i in body.ids if 0 < i < 2**63))
    return await _delete(state, principal, ids)


@router.post("/reindex", status_code=202)
async def reindex(state: StateDep, principal: AdminUser) -> dict[str, Any]:
    """Re-embed every image into a fresh index, swapped in when complete."""
    job = await start_job(state, "reindex", [], creator=principal.username)
    await enqueue(state, REINDEX, {"job_id": job["id"]})
    return {"job_id": job["id"]}


@router.post("/reconcile", status_code=202)
async def reconcile(state: StateDep, principal: AdminUser) -> dict[str, Any]:
    """Repair drift between the catalog and the index."""
    job = await start_job(state, "reconcile", [], creator=principal.username)
    await enqueue(state, RECONCILE, {"job_id": job["id"]})
    return {"job_id": job["id"]}


async def _json_or_error(call: Any) -> dict[str, Any]:
    try:
        body: dict[str, Any] = (await call).json()
        return body
    except DomainError as exc:
        return {"error": {"code": exc.code, "message": exc.message}}


@router.get("/stats")
async def stats(state: StateDep, _: AdminUser) -> dict[str, Any]:
    """Catalog counts per status, index size and type, the model in use."""
    up = state.upstreams
    catalog, index, model = await asyncio.gather(
        _json_or_error(up.catalog.arequest("GET", "/v1/stats")),
        _json_or_error(up.index.arequest("GET", "/v1/stats")),
        _json_or_error(up.embedding.arequest("GET", "/v1/info")),
    )
    return {"catalog": catalog, "index": index, "model": model}


class NewUser(BaseModel):
    username: str = Field(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(..., min_length=8, max_length=1024)
    role: Role = Role.viewer


@router.post("/users", status_code=201)
async def create_user(body: NewUser, state: StateDep, _: AdminUser) -> dict[str, Any]:
    """Create a user (admin or viewer)."""
    user: dict[str, Any] = (await state.upstreams.catalog.arequest(
        "POST", "/v1/users", json=body.model_dump())).json()
    return user


USERNAME = Path(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")


class UserChange(BaseModel):
    password: str | None = Field(None, min_length=8, max_length=1024)
    role: Role | None = None


@router.get("/users")
async def list_users(state: StateDep, _: AdminUser) -> dict[str, Any]:
    """Every user: name, role, creation and last login."""
    body: dict[str, Any] = (await state.upstreams.catalog.arequest("GET", "/v1/users")).json()
    return body


@router.patch("/users/{username}")
async def change_user(body: UserChange, state: StateDep, _: AdminUser,
                      username: str = USERNAME) -> dict[str, Any]:
    """Change a user's password and/or role; every token the user had stops working."""
    try:
        user: dict[str, Any] = (await state.upstreams.catalog.arequest(
            "PATCH", f"/v1/users/{quote(username, safe='')}",
            json=body.model_dump(exclude_none=True))).json()
    finally:
        state.sessions.forget(username)
    return user


@router.delete("/users/{username}", status_code=204, response_class=Response)
async def delete_user(state: StateDep, _: AdminUser, username: str = USERNAME) -> Response:
    """Delete a user; every token the user had stops working."""
    try:
        await state.upstreams.catalog.arequest("DELETE", f"/v1/users/{quote(username, safe='')}")
    finally:
        state.sessions.forget(username)
    return Response(status_code=204)
