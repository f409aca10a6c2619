"""Response bodies of the public API (docs/api.md): the OpenAPI document is the contract the
web app and the schema fuzzer check. Where the gateway passes an internal service's answer
through unchanged (tags, users, catalog counts, a mask), the route declares that service's
schema instead of a copy here."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from services.catalog.schemas import FailedItem, ImageOut, JobCounts, SkippedItem
from services.catalog.schemas import Stats as CatalogStats
from services.common.errors import ErrorBody, ErrorInfo
from services.common.images import MIME_BY_FORMAT
from services.common.vocabulary import ImageStatus, Role
from services.embedding.schemas import InfoResponse as EmbeddingInfo
from services.index.schemas import StatsResponse as IndexStats

# -- errors ----------------------------------------------------------------------------------


# Every route may answer these: the caller's mistake (4xx), an internal service down or
# shedding load (502, 503 with Retry-After). One shape for all.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorBody, "description": "the request was refused"},
    502: {"model": ErrorBody, "description": "an internal service failed"},
    503: {"model": ErrorBody, "description": "overloaded or a dependency is down; see "
                                              "Retry-After"},
}

# The media types of stored originals and thumbnails (WebP); 'application/octet-stream'
# only for a row whose type was never recorded.
IMAGE_MEDIA_TYPES = sorted({*MIME_BY_FORMAT.values(), "application/octet-stream"})
FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the image's bytes",
          "content": {m: {"schema": {"type": "string", "format": "binary"}}
                      for m in IMAGE_MEDIA_TYPES}},
}

# -- auth ------------------------------------------------------------------------------------


class Identity(BaseModel):
    username: str
    role: Role


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds")
    user: Identity


# -- search ----------------------------------------------------------------------------------


class SearchResult(BaseModel):
    id: int
    score: float = Field(description="cosine similarity to the query, -1..1")
    thumbnail_url: str
    file_url: str
    original_filename: str | None
    tags: list[str]
    width: int | None
    height: int | None
    bytes: int | None
    created_at: datetime | None


class QueryInfo(BaseModel):
    kind: Literal["image", "id", "sketch", "region"]
    model: str | None


class SearchPage(BaseModel):
    """One page of results, best first."""

    results: list[SearchResult]
    k: int
    offset: int
    total: int = Field(description="results found so far (exact when total_exact)")
    total_exact: bool
    query: QueryInfo
    took_ms: float


class RegionPage(SearchPage):
    """A result page plus the mask the search used."""

    mask_png_b64: str = Field(description="the object's mask: 8-bit PNG, 255 object")
    box: list[int] | None = Field(description="[x0, y0, x1, y1] of the mask, exclusive ends")
    mode: Literal["crop", "pool"]


class Heatmap(BaseModel):
    """Per patch of the result image, its best cosine similarity to any patch of the query,
    scaled to 0..1 over this image (0: its least similar patch, 1: its most similar)."""

    grid: list[int] = Field(description="[rows, columns] of patches")
    values: list[float] = Field(description="rows * columns values, row by row")
    width: int | None
    height: int | None


# -- images ----------------------------------------------------------------------------------


class ImageView(ImageOut):
    """A catalog row as the caller may see it, with its URLs. The admin-only fields (who
    uploaded, the content hash, where it is stored, the worker's error) are left out for
    everyone else."""

    sha256: str | None = None  # type: ignore[assignment]
    storage_key: str | None = None  # type: ignore[assignment]
    thumbnail_key: str | None = None
    uploader: str | None = None
    error: str | None = None
    thumbnail_url: str
    file_url: str


class ImagePage(BaseModel):
    images: list[ImageView]
    total: int | None = Field(description="rows matching the filters; null with total=false")
    next: str | None = Field(description="`after` for the next page; null on the last page")


# -- admin -----------------------------------------------------------------------------------


class UploadedImage(BaseModel):
    id: int
    original_filename: str
    status: ImageStatus
    duplicate: bool = Field(description="the same bytes were in the gallery already")


class RejectedFile(BaseModel):
    filename: str
    code: str
    message: str


class UploadAnswer(BaseModel):
    job_id: int
    images: list[UploadedImage]
    rejected: list[RejectedFile]


class JobAccepted(BaseModel):
    job_id: int


class DeleteAnswer(JobAccepted):
    ids: list[int] = Field(description="the images being deleted (others were skipped)")


class StatsUnavailable(BaseModel):
    """In place of a service's part of the stats when it did not answer."""

    error: ErrorInfo


class AdminStats(BaseModel):
    catalog: CatalogStats | StatsUnavailable
    index: IndexStats | StatsUnavailable
    model: EmbeddingInfo | StatsUnavailable


# -- jobs ------------------------------------------------------------------------------------


class NearDuplicate(BaseModel):
    image_id: int
    duplicate_of: int
    score: float | None = Field(description="cosine with the image it duplicates")
    skipped: bool = Field(description="not kept (on_near_duplicate=skip)")


class JobView(JobCounts):
    progress: float = Field(ge=0, le=1)
    finished: bool = Field(description="the job has ended (succeeded, failed or cancelled)")
    near_duplicates: list[NearDuplicate]
    items_failed: list[FailedItem]
    items_skipped: list[SkippedItem]
    error: str | None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


class StreamTicket(BaseModel):
    """Opens one job's event stream: `GET /jobs/{job_id}/events?ticket=<ticket>`."""

    ticket: str
    expires_in: int = Field(description="seconds the ticket stays valid")


EVENT_STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "`progress` events (a job, as GET /jobs/{job_id}) on every change, "
                         "`done` at the end; comment lines keep a quiet stream open",
          "content": {"text/event-stream": {"schema": {"type": "string"}}}},
}

# -- server ----------------------------------------------------------------------------------


class ModelConfig(BaseModel):
    id: str | None
    dim: int | None
    random_weights: bool = Field(description="rankings are meaningless: say so")


class SegmentationConfig(BaseModel):
    available: bool
    random_weights: bool


class GalleryConfig(BaseModel):
    indexed: int | None = Field(description="images search can find; null: unknown")


class SakuraConfig(BaseModel):
    enabled: bool
    count: int
    fall_speed: float


class LimitsConfig(BaseModel):
    max_upload_bytes: int
    max_files_per_request: int


class ServerConfig(BaseModel):
    """What the web app needs to know about this server."""

    public_search: bool
    model: ModelConfig
    segmentation: SegmentationConfig
    gallery: GalleryConfig
    sakura: SakuraConfig
    limits: LimitsConfig
    image_statuses: list[ImageStatus] = Field(
        description="the statuses the admin's filter offers (services/common/vocabulary.py)")
