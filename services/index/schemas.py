"""Request and response bodies of the index service (docs/api-internal.md, "index")."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

IndexTypeName = Literal["flat", "hnsw", "ivf_sq8", "ivf_pq"]


class VectorsBody(BaseModel):
    """Vectors as JSON lists or as base64 float32 (then `dim` is required)."""

    vectors: list[list[float]] | None = None
    vectors_b64: str | None = None
    dim: int | None = Field(default=None, ge=1, le=65536)


class UpsertRequest(VectorsBody):
    ids: list[int]
    model: str = Field(min_length=1, max_length=200)
    # The catalog tags of each id (tags[i] for ids[i]), replacing those held; absent: the
    # tags held are kept.
    tags: list[list[str]] | None = None


class TagsRequest(BaseModel):
    """Replace the tags of each id (tags[i] for ids[i]; [] clears them)."""

    ids: list[int]
    tags: list[list[str]]


class TagsOfRequest(BaseModel):
    ids: list[int]


class TagsOf(BaseModel):
    ids: list[int]
    tags: list[list[str]]


class TagsSet(BaseModel):
    updated: int


class TagCounts(BaseModel):
    tags: dict[str, int]


class UpsertResponse(BaseModel):
    upserted: int
    count: int


class RemoveRequest(BaseModel):
    ids: list[int]


class RemoveResponse(BaseModel):
    removed: int
    count: int


class SearchRequest(VectorsBody):
    k: int = Field(default=10, ge=1)
    allowed_ids: list[int] | None = None
    # Only ids carrying every one of these tags (the membership the index holds).
    tags: list[str] | None = Field(default=None, max_length=100)
    model: str | None = None


class SearchHit(BaseModel):
    ids: list[int]
    scores: list[float]


class SearchResponse(BaseModel):
    results: list[SearchHit]


class GetRequest(BaseModel):
    ids: list[int]


class GetResponse(BaseModel):
    ids: list[int]
    vectors: list[list[float]]


class IdsResponse(BaseModel):
    ids: list[int]
    next: int | None


class SnapshotResponse(BaseModel):
    count: int
    path: str


class RebuildRequest(BaseModel):
    """The new type plus parameters (hnsw_m, hnsw_ef_search, ivf_nlist, ivf_nprobe, ...)."""

    model_config = ConfigDict(extra="allow")

    type: IndexTypeName

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class StagingRequest(BaseModel):
    model: str = Field(min_length=1, max_length=200)
    dim: int = Field(ge=1, le=65536)
    type: IndexTypeName | None = None


class GenerationStats(BaseModel):
    """What one index generation holds."""

    count: int
    dim: int | None
    model: str | None
    type: str
    tombstones: int
    bytes: int = Field(description="RAM of vectors, ids and the search structure")
    disk_bytes: int = Field(description="the on-disk vector file (0: all in RAM)")
    trained: bool
    params: dict[str, Any]
    generation: str | None = None


class StatsResponse(GenerationStats):
    """The live index, and the one a reindex is filling (null when none is)."""

    staging: GenerationStats | None = None
