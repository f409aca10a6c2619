"""Admin routes: upload, delete, reindex, reconcile, stats, users. Always the admin role.
The work is `gateway/ingest.py`, `deleting.py`, `jobs.py`, `server.py` and `users.py`."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, File, Form, Path, Response, UploadFile
from pydantic import BaseModel, Field, StrictInt

from gateway import deleting, ingest, jobs, server, users
from gateway.deps import AdminUser, StateDep
from gateway.routes._forms import as_tags
from gateway.schemas import AdminStats, DeleteAnswer, JobAccepted, UploadAnswer
from services.catalog.schemas import UserList, UserOut
from services.common.vocabulary import Role

router = APIRouter(prefix="/admin", tags=["admin"])

@router.post("/images", status_code=202, response_model=UploadAnswer)
async def upload_images(
    state: StateDep,
    principal: AdminUser,
    file: list[UploadFile] = File(..., description="one or more images"),
    tags: str | None = Form(None, description="comma separated"),
    on_near_duplicate: Literal["keep", "skip"] = Form("keep"),
) -> UploadAnswer:
    """Upload images: stored, catalogued and queued for indexing (202 with the job id)."""
    return await ingest.upload(state, principal, file, tags=as_tags(tags),
                               on_near_duplicate=on_near_duplicate)


class DeleteMany(BaseModel):
    # Strict: "1" or true is not an id (a lax int would turn them into one).
    ids: list[StrictInt] = Field(..., min_length=1, max_length=1000)


@router.delete("/images/{image_id:int}", status_code=202, response_model=JobAccepted)
async def delete_image(state: StateDep, principal: AdminUser,
                       image_id: int = Path(..., ge=1)) -> JobAccepted:
    """Delete one image: hidden from search at once, then file, row and vector removed."""
    answer = await deleting.delete_image(state, principal, image_id)
    return JobAccepted(job_id=answer.job_id)


@router.post("/images/delete", status_code=202, response_model=DeleteAnswer)
async def delete_images(body: DeleteMany, state: StateDep,
                        principal: AdminUser) -> DeleteAnswer:
    """Delete many images (ids that do not exist or are already being deleted are skipped)."""
    return await deleting.delete_images(state, principal, body.ids)


@router.post("/reindex", status_code=202, response_model=JobAccepted)
async def reindex(state: StateDep, principal: AdminUser) -> JobAccepted:
    """Re-embed every image into a fresh index, swapped in when complete."""
    return await jobs.start_maintenance(state, principal, "reindex")


@router.post("/reconcile", status_code=202, response_model=JobAccepted)
async def reconcile(state: StateDep, principal: AdminUser) -> JobAccepted:
    """Repair drift between the catalog and the index."""
    return await jobs.start_maintenance(state, principal, "reconcile")


@router.get("/stats", response_model=AdminStats)
async def stats(state: StateDep, _: AdminUser) -> AdminStats:
    """Catalog counts per status, index size and type, the model in use."""
    return await server.admin_stats(state)


class NewUser(BaseModel):
    username: str = Field(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(..., min_length=8, max_length=1024)
    role: Role = Role.viewer


@router.post("/users", status_code=201, response_model=UserOut)
async def create_user(body: NewUser, state: StateDep, _: AdminUser) -> UserOut:
    """Create a user (admin or viewer)."""
    return await users.create_user(state, body.model_dump())


USERNAME = Path(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")


class UserChange(BaseModel):
    password: str | None = Field(None, min_length=8, max_length=1024)
    role: Role | None = None


@router.get("/users", response_model=UserList)
async def list_users(state: StateDep, _: AdminUser) -> UserList:
    """Every user: name, role, creation and last login."""
    return await users.list_users(state)


@router.patch("/users/{username}", response_model=UserOut)
async def change_user(body: UserChange, state: StateDep, _: AdminUser,
                      username: str = USERNAME) -> UserOut:
    """Change a user's password and/or role; every token the user had stops working."""
    return await users.change_user(state, username, body.model_dump(exclude_none=True))


@router.delete("/users/{username}", status_code=204, response_class=Response)
async def delete_user(state: StateDep, _: AdminUser, username: str = USERNAME) -> Response:
    """Delete a user; every token the user had stops working."""
    await users.delete_user(state, username)
    return Response(status_code=204)
