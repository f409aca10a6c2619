"""HTTP routes of the embedding service: `POST /v1/embed`, `GET /v1/info`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from numpy.typing import NDArray
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from services.common.errors import DomainError, InvalidRequest
from services.common.images import PayloadTooLarge, decode_image
from services.common.vectors import as_json_lists, encode_b64
from services.embedding.batching import ItemResult, MicroBatcher
from services.embedding.config import EmbeddingSettings
from services.embedding.engine import preprocess
from services.embedding.schemas import EmbedResponse, InfoResponse, Tokens, VectorFormat

# Multipart framing around the files: boundaries and part headers.
_MULTIPART_SLACK = 64 * 1024

_IMAGE_BODY = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "array",
                                            "items": {"type": "string", "format": "binary"}}},
                    "required": ["file"],
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
        "required": True,
    }
}


@dataclass
class ServiceState:
    """What the routes need, built by the app's lifespan."""

    settings: EmbeddingSettings
    batcher: MicroBatcher
    info: InfoResponse


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.embedding
    return state


async def _read_raw(request: Request, max_bytes: int) -> bytes:
    """The raw request body, refused as soon as it passes `max_bytes`."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"the image has more than {max_bytes} bytes",
                                  detail={"max_bytes": max_bytes})
        chunks.append(chunk)
    return b"".join(chunks)


async def read_images(request: Request, settings: EmbeddingSettings) -> list[bytes]:
    """The image bytes of a request: multipart fields `file`, or the whole body."""
    max_bytes = settings.max_image_bytes
    max_files = settings.max_files_per_request
    length = request.headers.get("content-length", "")
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        if length.isdigit() and int(length) > max_bytes:
            raise PayloadTooLarge(f"the image has {length} bytes; the limit is {max_bytes}",
                                  detail={"bytes": int(length), "max_bytes": max_bytes})
        body = await _read_raw(request, max_bytes)
        return [body]
    if length.isdigit() and int(length) > max_files * max_bytes + _MULTIPART_SLACK:
        raise PayloadTooLarge(f"the request has {length} bytes; at most {max_files} images of "
                              f"{max_bytes} bytes each are accepted",
                              detail={"bytes": int(length), "max_bytes": max_bytes})
    try:
        form = await request.form(max_files=max_files, max_fields=max_files + 16)
    except HTTPException as exc:
        raise InvalidRequest(f"the multipart body cannot be read: {exc.detail}") from exc
    uploads = form.getlist("file")
    if not uploads:
        raise InvalidRequest("no image: send one or more multipart fields `file`, or a raw body")
    images: list[bytes] = []
    for index, upload in enumerate(uploads):
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("the field `file` must be a file", detail={"index": index})
        if upload.size is not None and upload.size > max_bytes:
            raise PayloadTooLarge(
                f"image {index} has {upload.size} bytes; the limit is {max_bytes}",
                detail={"index": index, "bytes": upload.size, "max_bytes": max_bytes})
        images.append(await upload.read())
    await form.close()
    return images


def decode_all(blobs: list[bytes], settings: EmbeddingSettings) -> list[NDArray[np.float32]]:
    """Bytes -> preprocessed (3, H, W) float32 pixels; the first bad image fails the request."""
    out = []
    for index, data in enumerate(blobs):
        try:
            image, _ = decode_image(data, max_bytes=settings.max_image_bytes,
                                    max_pixels=settings.max_image_pixels,
                                    min_side=max(settings.decode_min_side,
                                                 settings.image_size) or None)
        except DomainError as exc:
            if len(blobs) > 1:
                exc.detail = {**(exc.detail if isinstance(exc.detail, dict) else {}),
                              "index": index}
            raise
        out.append(preprocess(image, mode=settings.resize_mode, size=settings.image_size))
    return out


def _stack(rows: list[NDArray[np.float32]]) -> NDArray[np.float32]:
    return np.stack(rows).astype(np.float32, copy=False)


def build_response(results: list[ItemResult], info: InfoResponse, fmt: VectorFormat,
                   patch: bool, mean: bool) -> dict[str, Any]:
    cls = _stack([r.cls for r in results])  # (n, D)
    body: dict[str, Any] = {"model": info.model, "dim": info.dim, "count": len(results)}
    if fmt is VectorFormat.b64:
        body["vectors_b64"] = encode_b64(cls)
    else:
        body["vectors"] = as_json_lists(cls)
    if mean:
        pooled = [r.mean_pooled for r in results]
        if any(m is None for m in pooled):
            raise RuntimeError("the model returned no mean-pooled features")
        body["mean_pooled"] = as_json_lists(_stack([m for m in pooled if m is not None]))
    if patch:
        tokens = []
        for r in results:
            if r.patch is None:
                raise RuntimeError("the model returned no patch tokens")
            gh, gw, dim = r.patch.shape
            tokens.append({"grid": [gh, gw], "data_b64": encode_b64(r.patch.reshape(gh * gw, dim))})
        body["patch_tokens"] = tokens
    return body


def create_router(auth: Callable[[Request], Awaitable[None]]) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(auth)], tags=["embedding"])

    @router.post("/embed", response_model=EmbedResponse, response_model_exclude_none=True,
                 openapi_extra=_IMAGE_BODY)
    async def embed(
        request: Request,
        tokens: Tokens | None = Query(
            None, description="`mean` adds the mean-pooled patch tokens, `patch` those and "
                              "the patch tokens"),
        format: VectorFormat = Query(VectorFormat.json, description="`vectors` as JSON or b64"),
    ) -> dict[str, Any]:
        """L2-normalised DINOv2 features of one or more images, in order."""
        state = _state(request)
        blobs = await read_images(request, state.settings)
        pixels = await run_in_threadpool(decode_all, blobs, state.settings)
        want_patch = tokens is Tokens.patch
        want_mean = tokens is not None
        results = await state.batcher.submit(pixels, want_patch, want_mean)
        return await run_in_threadpool(build_response, results, state.info, format, want_patch,
                                       want_mean)

    @router.get("/info", response_model=InfoResponse)
    async def info(request: Request) -> InfoResponse:
        """The model served: id, dimension, patch size, preprocessing, random weights or not."""
        return _state(request).info

    return router
