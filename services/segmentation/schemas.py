"""Response bodies of the segmentation service (docs/api-internal.md, "segmentation")."""

from __future__ import annotations

from pydantic import BaseModel, Field


class MaskRLE(BaseModel):
    """COCO uncompressed RLE: column-major runs, alternating 0s and 1s, 0s first."""

    size: list[int] = Field(description="[height, width]")
    counts: list[int]


class Candidate(BaseModel):
    score: float
    box: list[int] | None = Field(description="[x0, y0, x1, y1], exclusive ends; null if empty")
    mask_rle: MaskRLE


class SegmentResponse(BaseModel):
    """The answer to one click. The fields named in `outputs` (png, rle, candidates,
    low_res) are null when the request left them out."""

    mask_png_b64: str | None = Field(
        description="8-bit grayscale PNG: 255 object, 0 background (output png)")
    mask_rle: MaskRLE | None = Field(description="the best mask as RLE (output rle)")
    box: list[int] | None = Field(description="[x0, y0, x1, y1], exclusive ends; null if empty")
    score: float = Field(description="the decoder's predicted IoU of the best mask")
    width: int
    height: int
    candidates: list[Candidate] | None = Field(
        description="the other masks, best score first (output candidates)")
    low_res_mask_b64: str | None = Field(
        description="(256, 256) float32 logits of the best mask: send back as mask_input_b64 "
                    "(output low_res)")
    selection_id: str | None = Field(
        default=None, description="this mask, kept here: send it as prompts.selection_id with "
                                  "the next click to refine it (instead of mask_input_b64)")
    image_sha256: str = Field(description="send as image_sha256 on later clicks on this image")
    encoder_cached: bool
    model: str


class EncodeResponse(BaseModel):
    """The image is encoded and cached: its clicks pay for the decoder only."""

    image_sha256: str = Field(description="send as image_sha256 with the clicks")
    width: int
    height: int
    encoder_cached: bool = Field(description="true: it was cached already")
    model: str


class CacheInfo(BaseModel):
    entries: int
    bytes: int
    max_bytes: int
    hits: int
    misses: int
    evictions: int


class InfoResponse(BaseModel):
    model: str
    architecture: str
    random_weights: bool
    weights_sha256: str | None
    threads: int = Field(description="torch threads of the image encoder")
    decoder_threads: int = Field(description="torch threads of a click's decoder")
    encoder_runs: int = Field(description="image encoder passes since start (cache misses)")
    decoder_runs: int = Field(description="mask decoder passes since start (one per click)")
    cache: CacheInfo
