"""Object search: a mask from clicks (segmentation), search by that object (a masked crop
embedded, or the query's patch tokens pooled under the mask), and the similarity heatmap."""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
from fastapi import APIRouter, File, Form, Response, UploadFile
from numpy.typing import NDArray
from starlette.concurrency import run_in_threadpool

from gateway.deps import GatewayState, SearchLimited, SearchUser, StateDep
from gateway.objects import mask_from_png_b64, masked_crop, pool_patch_tokens
from gateway.routes._forms import InvalidRequest, as_tags
from gateway.searching import (
    QueryVector,
    SearchParams,
    check_query_image,
    embed,
    search_page,
    visible_image,
)
from gateway.uploads import read_limited
from services.common.errors import DomainError, NotFound
from services.common.images import decode_image
from services.common.storage import InvalidStorageKey, parse_sha256, resolve
from services.common.vectors import decode_b64

router = APIRouter(tags=["object search"], dependencies=[SearchLimited])


async def image_bytes(state: GatewayState, file: UploadFile | None, image_id: int | None,
                      *, admin: bool, field: str = "image_id") -> bytes:
    """The query image: the uploaded file, or the stored file of a visible image."""
    if file is not None:
        data = await read_limited(file, state.settings.max_upload_bytes)
        check_query_image(state, data)
        return data
    if image_id is None:
        raise InvalidRequest(f"give an image file or {field}")
    return await stored_bytes(state, await visible_image(state, image_id, admin=admin))


async def stored_bytes(state: GatewayState, image: dict[str, Any]) -> bytes:
    """The stored file of a catalog row."""
    try:
        path = resolve(state.images_dir, image.get("storage_key") or "")
    except InvalidStorageKey as exc:
        raise NotFound(f"image {image.get('id')} has no file", code="file_not_found") from exc
    try:
        return await run_in_threadpool(Path(path).read_bytes)
    except FileNotFoundError as exc:
        raise NotFound(f"image {image.get('id')} has no file", code="file_not_found") from exc


PROMPT_KEYS = ("points", "box", "mask_input_b64", "multimask")


def parse_prompts(text: str) -> dict[str, Any]:
    try:
        prompts = json.loads(text)
    except ValueError as exc:
        raise InvalidRequest("prompts must be JSON", code="invalid_prompts") from exc
    if not isinstance(prompts, dict):
        raise InvalidRequest("prompts must be a JSON object", code="invalid_prompts")
    # The segmentation service validates every field (docs/api-internal.md); a previous
    # answer's low-res mask makes the next click refine that mask instead of starting over.
    return {key: prompts[key] for key in PROMPT_KEYS if key in prompts}


async def call_segmentation(state: GatewayState, prompts: dict[str, Any], *,
                            data: bytes | None = None, sha256: str | None = None,
                            outputs: str | None = None) -> httpx.Response:
    """POST /v1/segment with the image as bytes or by its content hash.

    Always multipart: a form without a file would go urlencoded, and the base64 of a
    previous mask (350 kB) costs milliseconds to percent-encode and decode."""
    parts: dict[str, Any] = {"prompts": (None, json.dumps(prompts))}
    if outputs is not None:
        parts["outputs"] = (None, outputs)
    if data is not None:
        parts["file"] = ("image", data, "application/octet-stream")
    else:
        parts["image_sha256"] = (None, sha256)
    return await state.upstreams.segmentation.arequest("POST", "/v1/segment", files=parts)


async def segment_cached_first(state: GatewayState, sha256: str,
                               load: Callable[[], Awaitable[bytes]], prompts: dict[str, Any],
                               outputs: str | None = None) -> httpx.Response:
    """By hash when the service still holds the image's encoder output (no bytes travel),
    else with the bytes `load` gives."""
    if sha256:
        try:
            return await call_segmentation(state, prompts, sha256=sha256, outputs=outputs)
        except DomainError as exc:
            if exc.code != "image_not_cached":
                raise
    return await call_segmentation(state, prompts, data=await load(), outputs=outputs)


def patch_grid(answer: dict[str, Any]) -> NDArray[np.float32]:
    """The embedding answer's patch tokens of image 0 -> (gh, gw, D) float32."""
    tokens = answer["patch_tokens"][0]
    gh, gw = (int(v) for v in tokens["grid"])
    flat = decode_b64(tokens["data_b64"], int(answer["dim"]))  # (gh*gw, D)
    return flat.reshape(gh, gw, -1)


def grid_box(info: dict[str, Any], width: int, height: int) -> list[float] | None:
    """The part of the image the patch grid covers: all of it, or the centre square."""
    if (info.get("preprocessing") or {}).get("mode") != "center_crop":
        return None
    side = min(width, height)
    return [(width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2]


def crop_png(data: bytes, mask_b64: str, box: list[float] | None, max_bytes: int,
             max_pixels: int) -> bytes:
    image, _ = decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    crop = masked_crop(image, mask_from_png_b64(mask_b64), box)
    out = io.BytesIO()
    crop.save(out, format="PNG")
    return out.getvalue()


@router.post("/segment")
async def segment(
    state: StateDep,
    principal: SearchUser,
    prompts: str = Form(..., description='{"points": [{"x", "y", "label"}], "box"?, '
                        '"mask_input_b64"?, "multimask"?}'),
    file: UploadFile | None = File(None),
    image_id: int | None = Form(None, ge=1, le=2**63 - 1),
    image_sha256: str | None = Form(
        None, description="instead of file or image_id: the image_sha256 of an earlier "
                          "answer; 409 image_not_cached when the image must be sent again"),
    outputs: str | None = Form(
        None, description="comma separated, among png, rle, candidates, low_res (default: "
                          "all); the others are null"),
) -> Response:
    """A mask of the object under the clicks (preview)."""
    parsed = parse_prompts(prompts)
    if image_sha256 is not None:
        if file is not None or image_id is not None:
            raise InvalidRequest("give image_sha256 alone, without file or image_id")
        answer = await call_segmentation(state, parsed, outputs=outputs,
                                         sha256=parse_sha256(image_sha256))
    elif file is None and image_id is not None:
        image = await visible_image(state, image_id,
                                    admin=bool(principal and principal.is_admin))
        answer = await segment_cached_first(state, str(image.get("sha256") or ""),
                                            lambda: stored_bytes(state, image), parsed,
                                            outputs)
    else:
        data = await image_bytes(state, file, image_id,
                                 admin=bool(principal and principal.is_admin))
        answer = await call_segmentation(state, parsed, data=data, outputs=outputs)
    # The service's answer as it came (docs/api.md): decoding and re-encoding a mask's RLE
    # would cost more than the rest of the gateway's work.
    return Response(content=answer.content, media_type="application/json")


@router.post("/search/region")
async def search_region(
    state: StateDep,
    principal: SearchUser,
    prompts: str = Form(...),
    file: UploadFile | None = File(None),
    image_id: int | None = Form(None, ge=1, le=2**63 - 1),
    mode: Literal["crop", "pool"] = Form("crop"),
    k: int = Form(20, ge=1, le=200),
    offset: int = Form(0, ge=0, le=10_000),
    min_score: float = Form(0.0, ge=-1, le=1),
    tags: str | None = Form(None),
) -> dict[str, Any]:
    """Images most similar to one object of the query image."""
    started = time.perf_counter()
    params = SearchParams(k=min(k, state.settings.max_k), offset=offset, min_score=min_score,
                          tags=tuple(as_tags(tags)))
    data = await image_bytes(state, file, image_id,
                             admin=bool(principal and principal.is_admin))
    sha256 = await run_in_threadpool(lambda: hashlib.sha256(data).hexdigest())

    async def the_bytes() -> bytes:
        return data

    async with state.search_gate.slot():
        # The clicks before the search have put this image's encoder output in the cache.
        seg = (await segment_cached_first(state, sha256, the_bytes, parse_prompts(prompts),
                                          outputs="png")).json()
        mask_b64, box = seg["mask_png_b64"], seg.get("box")
        if mode == "crop":
            png = await run_in_threadpool(crop_png, data, mask_b64, box,
                                          state.settings.max_upload_bytes,
                                          state.settings.max_image_pixels)
            answer = await embed(state, png, "object.png")
            vector = answer["vectors"][0]
        else:
            answer = await embed(state, data, patch_tokens=True)
            info = await state.upstreams.embedding_info()
            mask = mask_from_png_b64(mask_b64)
            height, width = mask.shape
            pooled = pool_patch_tokens(patch_grid(answer), mask,
                                       grid_box=grid_box(info, width, height))
            vector = pooled.tolist()
        query = QueryVector(vector=vector, model=answer.get("model"), kind="region")
        page = await search_page(state, query, params, principal=principal, started=started)
    page["mask_png_b64"] = mask_b64
    page["box"] = box
    page["mode"] = mode
    return page


@router.post("/heatmap")
async def heatmap(
    state: StateDep,
    principal: SearchUser,
    image_id: int = Form(..., ge=1, le=2**63 - 1),
    query: UploadFile | None = File(None, description="the query image"),
    query_image_id: int | None = Form(None, ge=1, le=2**63 - 1),
) -> dict[str, Any]:
    """Where a result image resembles the query: per patch, the best cosine similarity to
    any patch of the query, scaled to 0..1."""
    admin = bool(principal and principal.is_admin)
    query_data = await image_bytes(state, query, query_image_id, admin=admin,
                                   field="query_image_id")
    result_row = await visible_image(state, image_id, admin=admin)
    result_data = await image_bytes(state, None, image_id, admin=admin)
    async with state.search_gate.slot():
        q = patch_grid(await embed(state, query_data, patch_tokens=True))
        r = patch_grid(await embed(state, result_data, patch_tokens=True))
    gh, gw, dim = r.shape
    sims = r.reshape(-1, dim) @ q.reshape(-1, dim).T  # (gh*gw, qh*qw) cosines
    best = sims.max(axis=1)
    lo, hi = float(best.min()), float(best.max())
    values = (best - lo) / (hi - lo) if hi > lo else np.zeros_like(best)
    return {"grid": [gh, gw], "values": [round(float(v), 4) for v in values],
            "width": result_row.get("width"), "height": result_row.get("height")}
