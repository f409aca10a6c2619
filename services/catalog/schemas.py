"""Request and response bodies of the catalog's internal API (docs/api-internal.md)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.common.vocabulary import (
    ITEM_OUTCOMES,
    JOB_FINISHED,
    ImageStatus,
    ItemState,
    JobKind,
    JobStatus,
    Role,
)

SHA256_PATTERN = r"^[0-9a-f]{64}$"
USERNAME_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"


def _one_of(allowed: Iterable[str]) -> AfterValidator:
    """Narrow a vocabulary enum to the members a caller may send here."""
    names = tuple(allowed)

    def check(value: str) -> str:
        if value not in names:
            raise ValueError(f"expected one of {', '.join(names)}")
        return value

    return AfterValidator(check)


# How a job may be finished, and what one of its items may become.
FinishStatus = Annotated[JobStatus, _one_of(s for s in JobStatus if s in JOB_FINISHED)]
ItemOutcome = Annotated[ItemState, _one_of(ITEM_OUTCOMES)]


class Order(StrEnum):
    asc = "asc"
    desc = "desc"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageCreate(_Body):
    sha256: str = Field(pattern=SHA256_PATTERN)
    original_filename: str = Field(max_length=255)
    storage_key: str = Field(min_length=1, max_length=255)
    mime: str = Field(min_length=1, max_length=64)
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    bytes: int = Field(ge=0)
    uploader: str | None = Field(default=None, max_length=64)
    tags: list[str] = Field(default_factory=list)


class ImageOut(BaseModel):
    id: int
    sha256: str
    original_filename: str
    storage_key: str
    thumbnail_key: str | None
    mime: str
    width: int
    height: int
    bytes: int
    status: ImageStatus
    model_id: str | None
    error: str | None
    near_duplicate_of: int | None
    uploader: str | None
    tags: list[str]
    created_at: datetime
    updated_at: datetime


class ImageCreated(BaseModel):
    image: ImageOut
    created: bool


class ImageCreateBatch(_Body):
    images: list[ImageCreate] = Field(min_length=1)


class ImagesCreated(BaseModel):
    results: list[ImageCreated] = Field(description="one per image given, in that order")


class ImageList(BaseModel):
    images: list[ImageOut]
    total: int | None = Field(description="rows matching the filters; null with total=false")
    next: str | None = Field(default=None, description="`after` for the next page (keyset); "
                             "null on the last page")


class Images(BaseModel):
    images: list[ImageOut]


class Lookup(_Body):
    ids: list[int]
    status: ImageStatus | None = None


class IdsByTags(_Body):
    tags: list[str] = Field(min_length=1)
    status: ImageStatus | None = ImageStatus.indexed


class Ids(BaseModel):
    ids: list[int]


class _MoveFields(_Body):
    """What a row records when it moves (each field only for the statuses that keep it)."""

    model_id: str | None = Field(default=None, max_length=128)
    error: str | None = None
    thumbnail_key: str | None = Field(default=None, max_length=255)
    near_duplicate_of: int | None = None


class Transition(_MoveFields):
    from_: ImageStatus = Field(alias="from")
    to: ImageStatus


class MoveItem(_MoveFields):
    id: int


class TransitionBatch(_Body):
    from_: ImageStatus = Field(alias="from")
    to: ImageStatus
    items: list[MoveItem] = Field(min_length=1)


class MoveResult(BaseModel):
    id: int
    changed: bool
    status: ImageStatus | None = Field(
        description="the row's status after the call: `to` when it moved, the status that "
        "kept it from moving otherwise; null when there is no such row")


class TransitionBatchResult(BaseModel):
    results: list[MoveResult]


class BulkTransition(_Body):
    ids: list[int]
    from_: list[ImageStatus] = Field(alias="from", min_length=1)
    to: ImageStatus


class BulkTransitionResult(BaseModel):
    changed: list[int]
    unchanged: list[int]


class ModelUpdate(_Body):
    ids: list[int]
    model_id: str = Field(min_length=1, max_length=128)


class ModelUpdateResult(BaseModel):
    updated: list[int]
    unchanged: list[int]


class TagsBody(_Body):
    tags: list[str]


class TagCount(BaseModel):
    name: str
    count: int


class TagList(BaseModel):
    tags: list[TagCount]


class Stats(BaseModel):
    images: dict[str, int]
    total: int


class JobCreate(_Body):
    kind: JobKind
    total: int = Field(default=0, ge=0)
    creator: str | None = Field(default=None, max_length=64)
    params: dict[str, Any] | None = None


class JobItems(_Body):
    image_ids: list[int]


class ItemReport(_Body):
    state: ItemOutcome
    error: str | None = None


class ItemOutcomeReport(ItemReport):
    image_id: int


class ItemReports(_Body):
    items: list[ItemOutcomeReport] = Field(min_length=1)


class JobFinish(_Body):
    status: FinishStatus
    error: str | None = None


class FailedItem(BaseModel):
    image_id: int
    error: str | None


class SkippedItem(BaseModel):
    image_id: int
    reason: str | None


class JobCounts(BaseModel):
    """A job's identity, state and item counts: the part every view of a job shows."""

    id: int
    kind: JobKind
    status: JobStatus
    total: int
    done: int
    failed: int
    skipped: int


class JobOut(JobCounts):
    creator: str | None
    params: dict[str, Any] | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    items_failed: list[FailedItem]
    items_skipped: list[SkippedItem]


class JobList(BaseModel):
    jobs: list[JobOut]


class UserCreate(_Body):
    username: str = Field(pattern=USERNAME_PATTERN)
    password: str = Field(min_length=1, max_length=1024)
    role: Role = Role.viewer


class Credentials(_Body):
    username: str = Field(max_length=256)
    password: str = Field(max_length=1024)


class UserUpdate(_Body):
    """A new password and/or role (at least one); either revokes the user's tokens."""

    password: str | None = Field(default=None, min_length=1, max_length=1024)
    role: Role | None = None


class UserOut(BaseModel):
    id: int
    username: str
    role: Role
    created_at: datetime
    last_login_at: datetime | None
    token_version: int


class UserList(BaseModel):
    users: list[UserOut]
