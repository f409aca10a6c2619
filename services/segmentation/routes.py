"""`POST /v1/segment` and `GET /v1/info`."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, File, Form, Request, UploadFile
from numpy.typing import NDArray
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.errors import InvalidRequest, NotFound
from services.common.http import ServiceClient
from services.common.images import decode_image
from services.common.masks import encode_png, encode_rle
from services.common.settings import CommonSettings
from services.common.storage import parse_sha256, resolve
from services.common.vocabulary import GONE
from services.segmentation.config import SegmentationSettings
from services.segmentation.forms import parse_outputs
from services.segmentation.predictor.cache import ByteLRU, Grants
from services.segmentation.predictor.errors import (
    ImageFileMissing,
    ImageNotCached,
    SelectionExpired,
)
from services.segmentation.predictor.loader import ModelHolder
from services.segmentation.predictor.masks import encode_logits
from services.segmentation.predictor.model import ARCHITECTURE
from services.segmentation.predictor.prompts import check_prompts, parse_prompts
from services.segmentation.predictor.segmenter import Segmentation, Segmenter
from services.segmentation.schemas import (
    CacheInfo,
    Candidate,
    EncodeResponse,
    InfoResponse,
    MaskRLE,
    SegmentResponse,
)

router = APIRouter(prefix="/v1", tags=["segmentation"])

class Metrics:
    """Prometheus series of the service: clicks, encoder passes, cache size."""

    def __init__(self, registry: CollectorRegistry, holder: ModelHolder) -> None:
        self.clicks = Counter("segmentation_clicks_total", "Segment requests answered",
                              ["encoder_cached"], registry=registry)
        self.encoder_runs = Counter("segmentation_encoder_runs_total",
                                    "Image encoder passes (cache misses)", registry=registry)
        self.seconds = Histogram(
            "segmentation_model_seconds", "Model time of one click", ["encoder_cached"],
            registry=registry, buckets=(0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 4, 8, 16))
        cache_bytes = Gauge("segmentation_cache_bytes", "Bytes held by the encoder cache",
                            registry=registry)
        cache_entries = Gauge("segmentation_cache_entries", "Images in the encoder cache",
                              registry=registry)

        def _stat(name: str) -> float:
            seg = holder.segmenter
            return float(getattr(seg.cache.stats(), name)) if seg is not None else 0.0

        cache_bytes.set_function(lambda: _stat("bytes"))
        cache_entries.set_function(lambda: _stat("entries"))


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise ImageFileMissing("the image's file is missing from storage") from exc


def _read_by_row(common: CommonSettings, row: dict[str, Any]) -> bytes:
    return _read_file(resolve(common.images_dir, str(row.get("storage_key") or "")))


async def _catalog_image(catalog: ServiceClient, image_id: int) -> dict[str, Any]:
    response = await catalog.arequest("GET", f"/v1/images/{image_id}")
    row: dict[str, Any] = response.json()
    if row.get("status") in GONE:  # on their way out: not segmented any more
        raise NotFound(f"image {image_id} is being deleted", code="image_not_found")
    return row


def _to_rgb(data: bytes, settings: SegmentationSettings) -> NDArray[np.uint8]:
    rgb, _ = decode_image(data, max_bytes=settings.max_image_bytes,
                          max_pixels=settings.max_image_pixels)
    return np.asarray(rgb, dtype=np.uint8)


def _not_cached(sha256: str) -> ImageNotCached:
    return ImageNotCached(
        f"image {sha256} is not in the encoder cache (evicted, or the service restarted): "
        "send the image again (file or image_id)", detail={"image_sha256": sha256})


@dataclass(frozen=True)
class Selection:
    """One click's best mask, kept for the next click on the same image by the same scope."""

    sha256: str
    scope: str
    logits: NDArray[np.float32]  # (256, 256)

    @property
    def nbytes(self) -> int:
        return int(self.logits.nbytes)


class Selections:
    """The selections (a byte-bounded LRU) and which scopes sent which image (`Grants`)."""

    def __init__(self, settings: SegmentationSettings) -> None:
        self.masks: ByteLRU[Selection] = ByteLRU(settings.selection_cache_bytes)
        self.grants = Grants()

    def keep(self, sha256: str, scope: str, logits: NDArray[np.float32]) -> str:
        selection_id = secrets.token_urlsafe(16)
        self.masks.put(selection_id, Selection(sha256, scope, np.array(logits, np.float32)))
        return selection_id

    def logits(self, selection_id: str, sha256: str, scope: str) -> NDArray[np.float32]:
        """(1, 256, 256) logits of a selection of this image by this scope."""
        found = self.masks.get(selection_id)
        if found is None or found.sha256 != sha256 or found.scope != scope:
            raise SelectionExpired("that selection is not held any more: send the clicks "
                                   "without selection_id", detail={"selection_id": selection_id})
        return found.logits[None]


def _render(result: Segmentation, sha256: str, model: str,
            outputs: frozenset[str], selection_id: str | None) -> SegmentResponse:
    """The answer, with only the `outputs` asked for (the others are null)."""
    best = result.best
    h, w = best.mask.shape
    candidates = None
    if "candidates" in outputs:
        candidates = [Candidate(score=c.score, box=c.box, mask_rle=MaskRLE(**encode_rle(c.mask)))
                      for c in result.others]
    return SegmentResponse(
        mask_png_b64=encode_png(best.mask) if "png" in outputs else None,
        mask_rle=MaskRLE(**encode_rle(best.mask)) if "rle" in outputs else None,
        box=best.box,
        score=best.score,
        width=int(w),
        height=int(h),
        candidates=candidates,
        low_res_mask_b64=encode_logits(best.low_res_logits) if "low_res" in outputs else None,
        selection_id=selection_id,
        image_sha256=sha256,
        encoder_cached=result.encoder_cached,
        model=model,
    )


@dataclass
class ImageSource:
    """The image of a request: its hash, and the bytes or catalog row to read on a miss."""

    sha256: str
    data: bytes | None
    row: dict[str, Any]
    by_hash: bool


async def _source(request: Request, file: UploadFile | None, image_id: int | None,
                  image_sha256: str | None, scope: str) -> ImageSource:
    """The image named by exactly one of file, image_id or image_sha256. By hash, only for a
    scope that has sent the image itself (else 409 image_not_cached, as if never seen)."""
    settings: SegmentationSettings = request.app.state.settings
    common: CommonSettings = request.app.state.common
    selections: Selections = request.app.state.selections
    segmenter: Segmenter = request.app.state.holder.get()
    if sum(source is not None for source in (file, image_id, image_sha256)) != 1:
        raise InvalidRequest("give exactly one of file, image_id or image_sha256")
    if image_sha256 is not None:
        sha256 = parse_sha256(image_sha256)
        if segmenter.cached_size(sha256) is None or not selections.grants.allows(sha256, scope):
            raise _not_cached(sha256)
        return ImageSource(sha256, None, {}, by_hash=True)
    if file is not None:
        data = await file.read(settings.max_image_bytes + 1)
        sha256 = hashlib.sha256(data).hexdigest()
        selections.grants.grant(sha256, scope)
        return ImageSource(sha256, data, {}, by_hash=False)
    assert image_id is not None
    row = await _catalog_image(request.app.state.catalog, image_id)
    sha256 = str(row.get("sha256") or "")
    source = ImageSource(sha256, None, row, by_hash=False)
    if not sha256 or segmenter.cached_size(sha256) is None:
        source.data = await asyncio.to_thread(_read_by_row, common, row)
        source.sha256 = hashlib.sha256(source.data).hexdigest()
    selections.grants.grant(source.sha256, scope)
    return source


SCOPE_FIELD = Form("", max_length=200, description=(
    "who is asking (the gateway sends the user or the anonymous client): an image named by "
    "image_sha256 or selection_id is answered only for the scope that sent it"))


@router.post("/segment", response_model=SegmentResponse)
async def segment(
    request: Request,
    file: UploadFile | None = File(None, description="the image"),
    image_id: int | None = Form(None, description="a catalog image id instead of a file"),
    image_sha256: str | None = Form(
        None, description="instead of a file: the image_sha256 of an earlier answer; 409 "
                          "image_not_cached when its embedding is not cached any more"),
    prompts: str | None = Form(None, description='JSON: {"points": [{"x", "y", "label"}], '
                                                 '"box"?, "selection_id"?, "mask_input_b64"?, '
                                                 '"multimask"?}'),
    outputs: str | None = Form(
        None, description="comma separated, among png, rle, candidates, low_res (default: "
                          "all); the others are null in the answer"),
    scope: str = SCOPE_FIELD,
) -> SegmentResponse:
    """Mask of the object the prompts point at (best, plus other candidates)."""
    settings: SegmentationSettings = request.app.state.settings
    common: CommonSettings = request.app.state.common
    metrics: Metrics = request.app.state.metrics
    selections: Selections = request.app.state.selections
    wanted = parse_outputs(outputs)
    if image_sha256 is not None:
        parse_sha256(image_sha256)
    parsed = parse_prompts(prompts)
    segmenter: Segmenter = request.app.state.holder.get()
    source = await _source(request, file, image_id, image_sha256, scope)
    sha256 = source.sha256

    size = segmenter.cached_size(sha256)
    rgb: NDArray[np.uint8] | None = None
    if size is None:
        if source.by_hash:  # the cache dropped the image between the two looks
            raise _not_cached(sha256)
        if source.data is None:
            source.data = await asyncio.to_thread(_read_by_row, common, source.row)
        rgb = await asyncio.to_thread(_to_rgb, source.data, settings)
        size = (rgb.shape[0], rgb.shape[1])
    previous = (selections.logits(parsed.selection_id, sha256, scope)
                if parsed.selection_id else None)
    arrays = check_prompts(parsed, width=size[1], height=size[0],
                           max_points=settings.max_points, mask_input=previous)

    def load_rgb() -> NDArray[np.uint8]:
        # Only reached on a miss: the decoded image, or (evicted meanwhile) the bytes again.
        if rgb is not None:
            return rgb
        if source.by_hash:
            raise _not_cached(sha256)
        data = source.data if source.data is not None else _read_by_row(common, source.row)
        return _to_rgb(data, settings)

    def run() -> SegmentResponse:
        start = time.perf_counter()
        result = segmenter.segment(sha256, arrays, load_rgb,
                                   candidates="candidates" in wanted)
        label = "true" if result.encoder_cached else "false"
        metrics.seconds.labels(label).observe(time.perf_counter() - start)
        metrics.clicks.labels(label).inc()
        if not result.encoder_cached:
            metrics.encoder_runs.inc()
        selection_id = selections.keep(sha256, scope, result.best.low_res_logits)
        return _render(result, sha256, segmenter.loaded.model_id, wanted, selection_id)

    return await asyncio.to_thread(run)


@router.post("/encode", response_model=EncodeResponse)
async def encode(
    request: Request,
    file: UploadFile | None = File(None, description="the image"),
    image_id: int | None = Form(None, description="a catalog image id instead of a file"),
    scope: str = SCOPE_FIELD,
) -> EncodeResponse:
    """Run the image encoder now, before the first click (the query image was just chosen):
    the clicks that follow pay for the decoder only."""
    settings: SegmentationSettings = request.app.state.settings
    common: CommonSettings = request.app.state.common
    metrics: Metrics = request.app.state.metrics
    segmenter: Segmenter = request.app.state.holder.get()
    source = await _source(request, file, image_id, None, scope)

    def load_rgb() -> NDArray[np.uint8]:
        data = source.data if source.data is not None else _read_by_row(common, source.row)
        return _to_rgb(data, settings)

    def run() -> EncodeResponse:
        (height, width), cached = segmenter.encode(source.sha256, load_rgb)
        if not cached:
            metrics.encoder_runs.inc()
        return EncodeResponse(image_sha256=source.sha256, width=width, height=height,
                              encoder_cached=cached, model=segmenter.loaded.model_id)

    return await asyncio.to_thread(run)


@router.get("/info", response_model=InfoResponse)
async def info(request: Request) -> InfoResponse:
    """Model id, random-weights flag, encoder/decoder pass counts and cache use."""
    segmenter: Segmenter = request.app.state.holder.get()
    stats = segmenter.cache.stats()
    loaded = segmenter.loaded
    return InfoResponse(
        model=loaded.model_id,
        architecture=ARCHITECTURE,
        random_weights=loaded.random_weights,
        weights_sha256=loaded.weights_sha256,
        threads=segmenter.threads,
        decoder_threads=segmenter.decoder_threads,
        encoder_runs=segmenter.encoder_runs,
        decoder_runs=segmenter.decoder_runs,
        cache=CacheInfo(entries=stats.entries, bytes=stats.bytes, max_bytes=stats.max_bytes,
                        hits=stats.hits, misses=stats.misses, evictions=stats.evictions),
    )
