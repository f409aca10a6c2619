"""Images by id only: list, metadata, the original file, the thumbnail; and the tags."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse

from gateway.deps import GatewayState, OptionalUser, SearchUser, StateDep
from gateway.headers import FILE_CSP
from gateway.searching import image_urls, visible_image
from gateway.security import NotAuthenticated, Principal
from services.common.errors import NotFound
from services.common.storage import InvalidStorageKey, resolve
from services.common.vocabulary import SEARCHABLE, ImageStatus
from services.common.vocabulary import Role as RoleName

router = APIRouter(tags=["images"])

# Fields only admins see: who uploaded, the content hash (which names the file, and would let
# anyone test whether a given picture is in the gallery) and where it is stored.
ADMIN_FIELDS = ("uploader", "sha256", "storage_key", "thumbnail_key", "error")


def shown(image: dict[str, Any], admin: bool) -> dict[str, Any]:
    """An image row as this caller may see it."""
    if admin:
        return image
    return {k: v for k, v in image.items() if k not in ADMIN_FIELDS}


@router.get("/images")
async def list_images(
    state: StateDep,
    principal: SearchUser,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=1_000_000),
    status: ImageStatus | None = Query(None),
    tag: str | None = Query(None, max_length=64),
    q: str | None = Query(None, max_length=255,
                          description="part of the original filename (case-insensitive)"),
    after: str | None = Query(None, max_length=200,
                              description="the previous page's `next` (keyset paging)"),
    total: bool = Query(True, description="count the matches (slow on huge galleries)"),
) -> dict[str, Any]:
    """Images, newest first (viewers see indexed images only; admins any status)."""
    admin = bool(principal and principal.is_admin)
    params: dict[str, Any] = {"limit": limit, "offset": offset, "order": "desc",
                              "total": total}
    if after:
        params["after"] = after
    if not admin:
        params["status"] = [s.value for s in SEARCHABLE]
    elif status:
        params["status"] = status.value
    if tag:
        params["tag"] = tag
    if q and q.strip():
        params["q"] = q.strip()
    body: dict[str, Any] = (await state.upstreams.catalog.arequest(
        "GET", "/v1/images", params=params)).json()
    images = [{**shown(image, admin), **image_urls(state, image, principal)}
              for image in body["images"]]
    return {"images": images, "total": body["total"], "next": body.get("next")}


@router.get("/images/{image_id}")
async def get_image(image_id: int, state: StateDep, principal: SearchUser) -> dict[str, Any]:
    """One image's metadata (with its `thumbnail_url` and `file_url`)."""
    admin = bool(principal and principal.is_admin)
    image = await visible_image(state, image_id, admin=admin)
    return {**shown(image, admin), **image_urls(state, image, principal)}


Exp = Query(None, ge=0, le=2**62, description="signed URL: expiry (unix seconds)")
Role = Query(None, description="signed URL: the role it was made for")
Sig = Query(None, max_length=128, description="signed URL: HMAC-SHA256 (hex)")


def reader_is_admin(request: Request, state: GatewayState, principal: Principal | None,
                    image_id: int, kind: str) -> bool:
    """Whether the caller reads this image's files as an admin. A signed URL (from a JSON
    answer; <img> tags send no token) grants the role it was signed for; otherwise the
    token's role, or anonymous access when search is public."""
    query = request.query_params
    if "sig" in query:
        role = state.signer.verify(image_id, kind, exp=query.get("exp"),
                                   role=query.get("role"), sig=query.get("sig"))
        return role == RoleName.admin
    if principal is None and not state.settings.public_search:
        raise NotAuthenticated("log in, or use the signed URL of a search result")
    return bool(principal and principal.is_admin)


def _file_response(root: Any, key: str | None, mime: str, image_id: int,
                   filename: str | None = None) -> FileResponse:
    try:
        path = resolve(root, key or "")
    except InvalidStorageKey as exc:
        raise NotFound(f"image {image_id} has no file", code="file_not_found") from exc
    if not path.is_file():
        raise NotFound(f"image {image_id} has no file", code="file_not_found")
    # Content-addressed: the bytes behind this id never change. The bytes are the uploader's:
    # shown inline as an image (the web app's lightbox), never run or sniffed as anything else.
    name = quote(filename or f"image-{image_id}", safe="")
    return FileResponse(path, media_type=mime, headers={
        "Cache-Control": "private, max-age=86400",
        "Content-Disposition": f"inline; filename*=UTF-8''{name}",
        "Content-Security-Policy": FILE_CSP,
    })


@router.get("/images/{image_id}/file", response_class=FileResponse)
async def image_file(
    request: Request, image_id: int, state: StateDep, principal: OptionalUser,
    exp: int | None = Exp, role: RoleName | None = Role,
    sig: str | None = Sig,
) -> FileResponse:
    """The original file (with a token, or through a signed URL)."""
    admin = reader_is_admin(request, state, principal, image_id, "file")
    image = await visible_image(state, image_id, admin=admin)
    return _file_response(state.images_dir, image.get("storage_key"),
                          image.get("mime") or "application/octet-stream", image_id,
                          image.get("original_filename"))


@router.get("/images/{image_id}/thumbnail", response_class=FileResponse)
async def image_thumbnail(
    request: Request, image_id: int, state: StateDep, principal: OptionalUser,
    exp: int | None = Exp, role: RoleName | None = Role,
    sig: str | None = Sig,
) -> FileResponse:
    """The WebP thumbnail (the original until the worker has made it); with a token, or
    through a signed URL."""
    admin = reader_is_admin(request, state, principal, image_id, "thumbnail")
    image = await visible_image(state, image_id, admin=admin)
    key = image.get("thumbnail_key")
    if key:
        try:
            if resolve(state.thumbs_dir, key).is_file():
                return _file_response(state.thumbs_dir, key, "image/webp", image_id)
        except InvalidStorageKey:
            pass
    return _file_response(state.images_dir, image.get("storage_key"),
                          image.get("mime") or "application/octet-stream", image_id)


@router.get("/tags")
async def list_tags(state: StateDep, _: SearchUser) -> dict[str, Any]:
    """Every tag with its image count."""
    body: dict[str, Any] = (await state.upstreams.catalog.arequest("GET", "/v1/tags")).json()
    return body
