"""Object search routes: a mask from clicks, the image encoded ahead of them, search by
that object, and the similarity heatmap. The work is `gateway/regions.py`."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, File, Form, Request, Response, UploadFile

from gateway import regions
from gateway.apidoc import LOGIN_OPTIONAL_IF_PUBLIC
from gateway.deps import SearchLimited, SearchUser, StateDep, client_key
from gateway.regions import Caller
from gateway.routes._forms import as_int, as_tags
from gateway.schemas import Heatmap, RegionPage
from gateway.searching import SearchParams
from gateway.security import Principal
from services.segmentation.schemas import EncodeResponse, SegmentResponse

router = APIRouter(tags=["object search"], dependencies=[SearchLimited])

MAX_ID = 2**63 - 1


def caller(request: Request, principal: Principal | None) -> Caller:
    return Caller(principal, client_key(request, principal))


@router.post("/segment", response_model=SegmentResponse,
            openapi_extra=LOGIN_OPTIONAL_IF_PUBLIC)
async def segment(
    request: Request,
    state: StateDep,
    principal: SearchUser,
    prompts: str = Form(..., description='{"points": [{"x", "y", "label"}], "box"?, '
                        '"selection_id"?, "mask_input_b64"?, "multimask"?}'),
    file: UploadFile | None = File(None),
    image_id: int | None = Form(None, ge=1, le=MAX_ID),
    image_sha256: str | None = Form(
        None, description="instead of file or image_id: the image_sha256 of an earlier "
                          "answer (or of /segment/prepare); 409 image_not_cached when the "
                          "image must be sent again"),
    outputs: str | None = Form(
        None, description="comma separated, among png, rle, candidates, low_res (default: "
                          "all); the others are null"),
) -> Response:
    """A mask of the object under the clicks (preview)."""
    content = await regions.segment(state, caller(request, principal), prompts, file=file,
                                    image_id=image_id, image_sha256=image_sha256,
                                    outputs=outputs)
    return Response(content=content, media_type="application/json")


@router.post("/segment/prepare", response_model=EncodeResponse,
            openapi_extra=LOGIN_OPTIONAL_IF_PUBLIC)
async def prepare(
    request: Request,
    state: StateDep,
    principal: SearchUser,
    file: UploadFile | None = File(None),
    image_id: int | None = Form(None, ge=1, le=MAX_ID),
) -> EncodeResponse:
    """Encode the query image as it is chosen, before the first click."""
    body = await regions.prepare(state, caller(request, principal), file=file,
                                 image_id=image_id)
    return EncodeResponse(**body)


@router.post("/search/region", response_model=RegionPage,
            openapi_extra=LOGIN_OPTIONAL_IF_PUBLIC)
async def search_region(
    request: Request,
    state: StateDep,
    principal: SearchUser,
    prompts: str = Form(...),
    file: UploadFile | None = File(None),
    image_id: int | None = Form(None, ge=1, le=MAX_ID),
    mode: Literal["crop", "pool"] = Form("crop"),
    k: int = Form(20, ge=1, description="at most the gateway's max_k"),
    offset: int = Form(0, ge=0, le=10_000),
    min_score: float = Form(0.0, ge=-1, le=1),
    tags: str | None = Form(None),
) -> RegionPage:
    """Images most similar to one object of the query image."""
    params = SearchParams(k=as_int("k", k, 20, 1, state.settings.max_k), offset=offset,
                          min_score=min_score, tags=tuple(as_tags(tags)))
    return await regions.search_region(state, caller(request, principal), prompts, params,
                                       mode, file=file, image_id=image_id)


@router.post("/heatmap", response_model=Heatmap,
            openapi_extra=LOGIN_OPTIONAL_IF_PUBLIC)
async def heatmap(
    request: Request,
    state: StateDep,
    principal: SearchUser,
    image_id: int = Form(..., ge=1, le=MAX_ID),
    query: UploadFile | None = File(None, description="the query image"),
    query_image_id: int | None = Form(None, ge=1, le=MAX_ID),
) -> Heatmap:
    """Where a result image resembles the query."""
    return await regions.heatmap(state, caller(request, principal), image_id, query=query,
                                 query_image_id=query_image_id)
