"""Images by id only: list, metadata, the original file, the thumbnail; and the tags. The
work is `gateway/gallery.py`."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse

from gateway import gallery
from gateway.apidoc import LOGIN_OPTIONAL, LOGIN_OPTIONAL_IF_PUBLIC
from gateway.deps import OptionalUser, SearchUser, StateDep
from gateway.schemas import FILE_RESPONSES, ImagePage, ImageView
from services.catalog.schemas import TagList
from services.common.vocabulary import ImageStatus
from services.common.vocabulary import Role as RoleName

router = APIRouter(tags=["images"])


@router.get("/images", response_model=ImagePage, response_model_exclude_unset=True,
            openapi_extra=LOGIN_OPTIONAL_IF_PUBLIC)
async def list_images(
    state: StateDep,
    principal: SearchUser,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=1_000_000),
    status: ImageStatus | None = Query(None, description="admins only; viewers see indexed"),
    tag: str | None = Query(None, max_length=64),
    q: str | None = Query(None, max_length=255,
                          description="part of the original filename (case-insensitive)"),
    after: str | None = Query(None, max_length=200,
                              description="the previous page's `next` (keyset paging)"),
    total: bool = Query(True, description="count the matches (slow on huge galleries)"),
) -> ImagePage:
    """Images, newest first (viewers see indexed images only; admins any status)."""
    return await gallery.list_images(state, principal, limit=limit, offset=offset,
                                     status=status.value if status else None, tag=tag, q=q,
                                     after=after, total=total)


@router.get("/images/{image_id}", response_model=ImageView,
            response_model_exclude_unset=True, openapi_extra=LOGIN_OPTIONAL_IF_PUBLIC)
async def get_image(image_id: int, state: StateDep, principal: SearchUser) -> ImageView:
    """One image's metadata (with its `thumbnail_url` and `file_url`)."""
    return await gallery.get_image(state, principal, image_id)


Exp = Query(None, ge=0, le=2**62, description="signed URL: expiry (unix seconds)")
Role = Query(None, description="signed URL: the role it was made for")
Sig = Query(None, max_length=128, description="signed URL: HMAC-SHA256 (hex)")


@router.get("/images/{image_id}/file", response_class=FileResponse,
            responses=FILE_RESPONSES, openapi_extra=LOGIN_OPTIONAL)
async def image_file(
    request: Request, image_id: int, state: StateDep, principal: OptionalUser,
    exp: int | None = Exp, role: RoleName | None = Role,
    sig: str | None = Sig,
) -> FileResponse:
    """The original file (with a token, or through a signed URL)."""
    return await gallery.original(state, request.query_params, principal, image_id)


@router.get("/images/{image_id}/thumbnail", response_class=FileResponse,
            responses=FILE_RESPONSES, openapi_extra=LOGIN_OPTIONAL)
async def image_thumbnail(
    request: Request, image_id: int, state: StateDep, principal: OptionalUser,
    exp: int | None = Exp, role: RoleName | None = Role,
    sig: str | None = Sig,
) -> FileResponse:
    """The WebP thumbnail (the original until the worker has made it); with a token, or
    through a signed URL."""
    return await gallery.thumbnail(state, request.query_params, principal, image_id)


@router.get("/tags", response_model=TagList,
            openapi_extra=LOGIN_OPTIONAL_IF_PUBLIC)
async def list_tags(state: StateDep, _: SearchUser) -> TagList:
    """Every tag with its image count."""
    return TagList(**(await state.upstreams.catalog.arequest("GET", "/v1/tags")).json())
