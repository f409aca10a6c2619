"""Object search: a mask from clicks (the segmentation service), search by that object (a
masked crop embedded, or the query's patch tokens pooled under the mask), and where a result
resembles the query (the similarity heatmap). The routes (`gateway/routes/region.py`) parse
the request and answer with what these functions return.

Every call to the segmentation service names the caller's scope (`client_key`: the user, or
the anonymous client's address): an image named by hash, or a selection by id, is answered
only for the scope that sent the image. Clicks and encodings take a slot of their own gate
(`state.segment_gate`, bounded like search's), so under load they are shed with 503 and
Retry-After instead of piling up, and searches never queue behind an image encoder pass; a
region search is a search (`state.search_gate`).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
from fastapi import UploadFile
from numpy.typing import NDArray
from starlette.concurrency import run_in_threadpool

from gateway.deps import GatewayState
from gateway.objects import masked_crop, pool_patch_tokens
from gateway.routes._forms import InvalidRequest
from gateway.schemas import Heatmap, RegionPage
from gateway.searching import (
    QueryVector,
    SearchParams,
    check_query_image,
    embed,
    search_page,
    visible_image,
)
from gateway.security import Principal
from gateway.uploads import read_limited
from services.common.errors import DomainError, NotFound
from services.common.images import decode_image
from services.common.masks import decode_png
from services.common.storage import InvalidStorageKey, parse_sha256, resolve
from services.common.vectors import decode_b64

# What a prompt may hold (the segmentation service validates every field,
# docs/api-internal.md): a previous answer's `selection_id` makes the next click refine that
# mask instead of starting over.
PROMPT_KEYS = ("points", "box", "selection_id", "mask_input_b64", "multimask")


@dataclass(frozen=True)
class Caller:
    """Who asks: admin sees every image; `scope` keys the segmentation service's grants."""

    principal: Principal | None
    scope: str

    @property
    def admin(self) -> bool:
        return bool(self.principal and self.principal.is_admin)


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


def parse_prompts(text: str) -> dict[str, Any]:
    try:
        prompts = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest("prompts must be JSON", code="invalid_prompts") from exc
    if not isinstance(prompts, dict):
        raise InvalidRequest("prompts must be a JSON object", code="invalid_prompts")
    return {key: prompts[key] for key in PROMPT_KEYS if key in prompts}


async def call_segmentation(state: GatewayState, path: str, scope: str,
                            prompts: dict[str, Any] | None = None, *,
                            data: bytes | None = None, sha256: str | None = None,
                            outputs: str | None = None) -> httpx.Response:
    """POST /v1/segment (or /v1/encode) with the image as bytes or by its content hash.

    Always multipart: a form without a file would go urlencoded."""
    parts: dict[str, Any] = {"scope": (None, scope)}
    if prompts is not None:
        parts["prompts"] = (None, json.dumps(prompts))
    if outputs is not None:
        parts["outputs"] = (None, outputs)
    if data is not None:
        parts["file"] = ("image", data, "application/octet-stream")
    else:
        parts["image_sha256"] = (None, sha256)
    return await state.upstreams.segmentation.arequest("POST", path, files=parts)


async def segment_cached_first(state: GatewayState, scope: str, sha256: str,
                               load: Callable[[], Awaitable[bytes]], prompts: dict[str, Any],
                               outputs: str | None = None) -> httpx.Response:
    """By hash when the service still holds the image's encoder output for this scope (no
    bytes travel), else with the bytes `load` gives."""
    if sha256:
        try:
            return await call_segmentation(state, "/v1/segment", scope, prompts,
                                           sha256=sha256, outputs=outputs)
        except DomainError as exc:
            if exc.code != "image_not_cached":
                raise
    return await call_segmentation(state, "/v1/segment", scope, prompts, data=await load(),
                                   outputs=outputs)


async def segment(state: GatewayState, caller: Caller, prompts: str, *,
                  file: UploadFile | None, image_id: int | None, image_sha256: str | None,
                  outputs: str | None) -> bytes:
    """The segmentation service's answer (JSON bytes) to one click, as it came: decoding and
    re-encoding a mask's RLE would cost more than the rest of the gateway's work."""
    parsed = parse_prompts(prompts)
    if image_sha256 is not None:
        if file is not None or image_id is not None:
            raise InvalidRequest("give image_sha256 alone, without file or image_id")
        sha256 = parse_sha256(image_sha256)
        async with state.segment_gate.slot():
            answer = await call_segmentation(state, "/v1/segment", caller.scope, parsed,
                                             sha256=sha256, outputs=outputs)
    elif file is None and image_id is not None:
        image = await visible_image(state, image_id, admin=caller.admin)
        async with state.segment_gate.slot():
            answer = await segment_cached_first(state, caller.scope,
                                                str(image.get("sha256") or ""),
                                                lambda: stored_bytes(state, image), parsed,
                                                outputs)
    else:
        data = await image_bytes(state, file, image_id, admin=caller.admin)
        async with state.segment_gate.slot():
            answer = await call_segmentation(state, "/v1/segment", caller.scope, parsed,
                                             data=data, outputs=outputs)
    return answer.content


async def prepare(state: GatewayState, caller: Caller, *, file: UploadFile | None,
                  image_id: int | None) -> dict[str, Any]:
    """Encode the query image now, as it is chosen: its first click pays for the decoder
    only. The answer's `image_sha256` names the image in the clicks."""
    data = await image_bytes(state, file, image_id, admin=caller.admin)
    async with state.segment_gate.slot():
        answer = await call_segmentation(state, "/v1/encode", caller.scope, data=data)
    body: dict[str, Any] = answer.json()
    return body


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
    crop = masked_crop(image, decode_png(mask_b64), box)
    out = io.BytesIO()
    crop.save(out, format="PNG")
    return out.getvalue()


async def search_region(state: GatewayState, caller: Caller, prompts: str,
                        params: SearchParams, mode: Literal["crop", "pool"], *,
                        file: UploadFile | None, image_id: int | None) -> RegionPage:
    """Images most similar to the object the prompts select in the query image."""
    started = time.perf_counter()
    data = await image_bytes(state, file, image_id, admin=caller.admin)
    sha256 = await run_in_threadpool(lambda: hashlib.sha256(data).hexdigest())

    async def the_bytes() -> bytes:
        return data

    async with state.search_gate.slot():
        # The clicks before the search have put this image's encoder output in the cache.
        seg = (await segment_cached_first(state, caller.scope, sha256, the_bytes,
                                          parse_prompts(prompts), outputs="png")).json()
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
            mask = await run_in_threadpool(decode_png, mask_b64)
            height, width = mask.shape
            pooled = pool_patch_tokens(patch_grid(answer), mask,
                                       grid_box=grid_box(info, width, height))
            vector = pooled.tolist()
        query = QueryVector(vector=vector, model=answer.get("model"), kind="region")
        page = await search_page(state, query, params, principal=caller.principal,
                                 started=started)
    return RegionPage(**page.model_dump(), mask_png_b64=mask_b64, box=box, mode=mode)


async def heatmap(state: GatewayState, caller: Caller, image_id: int, *,
                  query: UploadFile | None, query_image_id: int | None) -> Heatmap:
    """Where result `image_id` resembles the query: per patch, the best cosine similarity
    to any patch of the query, scaled to 0..1."""
    query_data = await image_bytes(state, query, query_image_id, admin=caller.admin,
                                   field="query_image_id")
    result_row = await visible_image(state, image_id, admin=caller.admin)
    result_data = await stored_bytes(state, result_row)
    async with state.search_gate.slot():
        q = patch_grid(await embed(state, query_data, patch_tokens=True))
        r = patch_grid(await embed(state, result_data, patch_tokens=True))
    gh, gw, dim = r.shape
    sims = r.reshape(-1, dim) @ q.reshape(-1, dim).T  # (gh*gw, qh*qw) cosines
    best = sims.max(axis=1)
    lo, hi = float(best.min()), float(best.max())
    values = (best - lo) / (hi - lo) if hi > lo else np.zeros_like(best)
    return Heatmap(grid=[gh, gw], values=[round(float(v), 4) for v in values],
                   width=result_row.get("width"), height=result_row.get("height"))
