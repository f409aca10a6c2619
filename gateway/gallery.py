"""The gallery as callers see it: pages of images and one image's metadata (admin-only
fields left out for everyone else, with the URLs this caller can load), and the files
behind an id (the original, the thumbnail), read as a signed URL or the caller's token
allows. Files are found by the catalog row's storage key, never by a path from the request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi.responses import FileResponse
from starlette.datastructures import QueryParams

from gateway.deps import GatewayState
from gateway.headers import FILE_CSP
from gateway.schemas import ImagePage, ImageView
from gateway.searching import image_urls, visible_image
from gateway.security import NotAuthenticated, Principal
from services.common.errors import NotFound
from services.common.storage import InvalidStorageKey, resolve
from services.common.vocabulary import SEARCHABLE, Role

# Fields only admins see: who uploaded, the content hash (which names the file, and would let
# anyone test whether a given picture is in the gallery) and where it is stored.
ADMIN_FIELDS = ("uploader", "sha256", "storage_key", "thumbnail_key", "error")


def shown(state: GatewayState, image: dict[str, Any], principal: Principal | None
          ) -> ImageView:
    """An image row as this caller may see it, with its URLs."""
    admin = bool(principal and principal.is_admin)
    fields = image if admin else {k: v for k, v in image.items() if k not in ADMIN_FIELDS}
    return ImageView(**fields, **image_urls(state, image, principal))


async def list_images(state: GatewayState, principal: Principal | None, *, limit: int,
                      offset: int, status: str | None, tag: str | None, q: str | None,
                      after: str | None, total: bool) -> ImagePage:
    """Images, newest first: viewers see `indexed` ones only, admins any status."""
    admin = bool(principal and principal.is_admin)
    params: dict[str, Any] = {"limit": limit, "offset": offset, "order": "desc",
                              "total": total}
    if after:
        params["after"] = after
    if not admin:
        params["status"] = [s.value for s in SEARCHABLE]
    elif status:
        params["status"] = status
    if tag:
        params["tag"] = tag
    if q and q.strip():
        params["q"] = q.strip()
    body: dict[str, Any] = (await state.upstreams.catalog.arequest(
        "GET", "/v1/images", params=params)).json()
    return ImagePage(images=[shown(state, image, principal) for image in body["images"]],
                     total=body["total"], next=body.get("next"))


async def get_image(state: GatewayState, principal: Principal | None,
                    image_id: int) -> ImageView:
    image = await visible_image(state, image_id, admin=bool(principal and principal.is_admin))
    return shown(state, image, principal)


def reader_is_admin(query: QueryParams, state: GatewayState, principal: Principal | None,
                    image_id: int, kind: str) -> bool:
    """Whether the caller reads this image's files as an admin. A signed URL (from a JSON
    answer; <img> tags send no token) grants the role it was signed for; otherwise the
    token's role, or anonymous access when search is public."""
    if "sig" in query:
        role = state.signer.verify(image_id, kind, exp=query.get("exp"),
                                   role=query.get("role"), sig=query.get("sig"))
        return role == Role.admin
    if principal is None and not state.settings.public_search:
        raise NotAuthenticated("log in, or use the signed URL of a search result")
    return bool(principal and principal.is_admin)


def file_response(root: Path, key: str | None, mime: str, image_id: int,
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


async def original(state: GatewayState, query: QueryParams, principal: Principal | None,
                   image_id: int) -> FileResponse:
    """The original file of an image the caller may see."""
    admin = reader_is_admin(query, state, principal, image_id, "file")
    image = await visible_image(state, image_id, admin=admin)
    return file_response(state.images_dir, image.get("storage_key"),
                         image.get("mime") or "application/octet-stream", image_id,
                         image.get("original_filename"))


async def thumbnail(state: GatewayState, query: QueryParams, principal: Principal | None,
                    image_id: int) -> FileResponse:
    """The WebP thumbnail, or the original until the worker has made one."""
    admin = reader_is_admin(query, state, principal, image_id, "thumbnail")
    image = await visible_image(state, image_id, admin=admin)
    key = image.get("thumbnail_key")
    if key:
        try:
            if resolve(state.thumbs_dir, key).is_file():
                return file_response(state.thumbs_dir, key, "image/webp", image_id)
        except InvalidStorageKey:
            pass
    return file_response(state.images_dir, image.get("storage_key"),
                         image.get("mime") or "application/octet-stream", image_id)
