"""Request options and response bodies of the embedding service (docs/api-internal.md)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


class Tokens(StrEnum):
    """Extra outputs: `mean` adds the mean-pooled patch tokens, `patch` those and every
    image's L2-normalised patch tokens. Without either, only the CLS token goes through the
    last block (the fastest request)."""

    mean = "mean"
    patch = "patch"


class VectorFormat(StrEnum):
    json = "json"
    b64 = "b64"


class PatchTokens(BaseModel):
    grid: list[int] = Field(description="[gh, gw]: patch rows and columns")
    data_b64: str = Field(description="base64 little-endian float32, (gh*gw, dim) row-major")


class EmbedResponse(BaseModel):
    model: str = Field(description="model id: architecture and SHA-256 prefix of the weights")
    dim: int
    count: int
    vectors: list[list[float]] | None = Field(
        default=None, description="(count, dim) L2-normalised CLS features (format=json)")
    vectors_b64: str | None = Field(
        default=None, description="the same as base64 little-endian float32 (format=b64)")
    mean_pooled: list[list[float]] | None = Field(
        default=None,
        description="(count, dim) L2-normalised mean of the patch tokens (tokens=mean|patch)")
    patch_tokens: list[PatchTokens] | None = None


class Preprocessing(BaseModel):
    mode: str
    image_size: int
    mean: list[float]
    std: list[float]


class InfoResponse(BaseModel):
    model: str
    architecture: str
    dim: int
    patch_size: int
    num_registers: int
    preprocessing: Preprocessing
    random_weights: bool
    weights_sha256: str
