"""Search by image, by id ("more like this") and by sketch."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, File, Form, Request, UploadFile

from gateway import searching
from gateway.apidoc import LOGIN_OPTIONAL_IF_PUBLIC
from gateway.deps import SearchLimited, SearchUser, StateDep
from gateway.routes._forms import (
    InvalidRequest,
    as_float,
    as_int,
    as_tags,
    json_fields,
    pick,
)
from gateway.schemas import SearchPage
from gateway.searching import SearchParams, search_image_or_id
from gateway.uploads import read_limited

router = APIRouter(tags=["search"], dependencies=[SearchLimited])


def search_params(state: Any, request: Request, body: dict[str, Any], k: Any, offset: Any,
                  min_score: Any, tags: Any) -> SearchParams:
    return SearchParams(
        k=as_int("k", pick("k", k, body, request), 20, 1, state.settings.max_k),
        offset=as_int("offset", pick("offset", offset, body, request), 0, 0, 10_000),
        min_score=as_float("min_score", pick("min_score", min_score, body, request),
                           0.0, -1.0, 1.0),
        tags=tuple(as_tags(pick("tags", tags, body, request))),
    )


@router.post("/search", response_model=SearchPage,
            openapi_extra=LOGIN_OPTIONAL_IF_PUBLIC)
async def search(
    request: Request,
    state: StateDep,
    principal: SearchUser,
    file: UploadFile | None = File(None, description="the query image"),
    image_id: int | None = Form(None, description="search like this indexed image"),
    k: int | None = Form(None, ge=1, description="at most the gateway's max_k"),
    offset: int | None = Form(None, ge=0, le=10_000),
    min_score: float | None = Form(None, ge=-1, le=1),
    tags: str | None = Form(None, description="comma separated; all required"),
) -> SearchPage:
    """Most similar indexed images to an uploaded image or to an image id."""
    started = time.perf_counter()
    body = await json_fields(request)
    params = search_params(state, request, body, k, offset, min_score, tags)
    raw_id = pick("image_id", image_id, body, request)
    if file is None and raw_id in (None, ""):
        raise InvalidRequest("give an image file or an image_id")
    data = await read_limited(file, state.settings.max_upload_bytes) if file else None
    query_id = None if data is not None else as_int("image_id", raw_id, 0, 1, 2**63 - 1)
    return await search_image_or_id(state, params, data=data, image_id=query_id,
                                    principal=principal, started=started)


@router.post("/search/sketch", response_model=SearchPage,
            openapi_extra=LOGIN_OPTIONAL_IF_PUBLIC)
async def search_sketch(
    request: Request,
    state: StateDep,
    principal: SearchUser,
    file: UploadFile = File(..., description="the canvas as PNG"),
    k: int | None = Form(None, ge=1, description="at most the gateway's max_k"),
    offset: int | None = Form(None, ge=0, le=10_000),
    min_score: float | None = Form(None, ge=-1, le=1),
    tags: str | None = Form(None, description="comma separated; all required"),
) -> SearchPage:
    """Most similar indexed images to a drawing (normalised: cropped, squared, even lines)."""
    started = time.perf_counter()
    params = search_params(state, request, {}, k, offset, min_score, tags)
    data = await read_limited(file, state.settings.max_upload_bytes)
    return await searching.search_sketch(state, params, data, principal=principal,
                                         started=started)
