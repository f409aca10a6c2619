"""Adding one image file to the gallery: check it, store it, create (or find) its catalog row.

The gateway's uploads and the workers' bulk ingest both call these functions, so a file is
accepted, stored and retried the same way whichever way it arrives:

- `check_image` decodes the whole file (a header alone does not prove it is not truncated);
- `store` writes it once under its content-addressed key (`image_key`, atomic);
  `store_checked` also keeps what its row needs, without the bytes;
- `register_many` creates the rows of stored files in one catalog request, idempotent by
  sha256. A row that already exists is a duplicate, except a `failed`
  one, which goes back to `pending` (another try), and one being deleted, which is refused
  until the delete has finished. A duplicate still `pending` is ingested again (its first
  task may have died with a worker; ingest is idempotent). Tags given for an existing row
  are added to it. A file the call stored is removed again when its row cannot be made.

Both talk to the catalog through `CatalogCall` (method, path, JSON body -> JSON
answer), a blocking call: the gateway runs it in a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.errors import DomainError
from services.common.images import ImageInfo, decode_image
from services.common.storage import image_key, resolve, write_atomic
from services.common.vocabulary import GONE, ImageStatus

# (method, path, JSON body) -> the catalog's JSON answer; raises DomainError on an error answer
CatalogCall = Callable[[str, str, dict[str, Any]], Any]
# (image ids, the tags of each now) -> the index holds them (PUT /v1/tags on the index service).
IndexTags = Callable[[list[int], list[list[str]]], None]

class ImageBeingDeleted(DomainError):
    """The same image exists and is being deleted: it cannot be added until that finishes."""

    code = "image_being_deleted"
    status = 409


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    sha256: str
    info: ImageInfo
    filename: str


@dataclass(frozen=True)
class Registered:
    """The row of a registered file; `to_ingest` when it needs indexing (new, retried, or
    still pending); `duplicate` when the row existed already (a failed one retried is not)."""

    image: dict[str, Any]
    to_ingest: bool
    duplicate: bool


def check_image(data: bytes, filename: str, *, max_bytes: int, max_pixels: int) -> CheckedImage:
    """Bytes -> a checked image (a full decode proves it is not truncated). CPU-bound; raises
    the `ImageError` of the first problem (empty, not an image, truncated, too large)."""
    _, info = decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    return CheckedImage(data=data, sha256=hashlib.sha256(data).hexdigest(), info=info,
                        filename=filename)


def store(images_dir: Path, image: CheckedImage) -> tuple[str, bool]:
    """Write the file under its content key (once); returns the key and whether it is new."""
    key = image_key(image.sha256, image.info.ext)
    path = resolve(images_dir, key)
    if path.exists():
        return key, False
    write_atomic(path, image.data)
    return key, True


def discard(images_dir: Path, key: str) -> None:
    """Remove a file stored by a call whose catalog row could not be made."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(resolve(images_dir, key))


@dataclass(frozen=True)
class StoredImage:
    """A checked image written under its content key (`store_checked`): what its catalog row
    needs. The bytes are not kept, so a batch of these costs little memory."""

    sha256: str
    filename: str
    key: str
    new_file: bool  # this call wrote the file (it is removed again if no row is made)
    mime: str
    width: int
    height: int
    bytes: int


def store_checked(images_dir: Path, image: CheckedImage) -> StoredImage:
    """`store` a checked image; its facts for `register_many`."""
    key, new_file = store(images_dir, image)
    return StoredImage(sha256=image.sha256, filename=image.filename, key=key,
                       new_file=new_file, mime=image.info.mime, width=image.info.width,
                       height=image.info.height, bytes=len(image.data))


def register_many(call: CatalogCall, images_dir: Path, stored: Sequence[StoredImage], *,
                  tags: list[str], uploader: str | None, index_tags: IndexTags | None = None
                  ) -> list[Registered | ImageBeingDeleted]:
    """Create or find the rows of stored files in one catalog request (`POST
    /v1/images/batch`); for each, in order, its `Registered`, or `ImageBeingDeleted` (nothing
    changed but the tags) when the same image is being deleted. When the request fails, the
    files it stored are removed and the error is raised.

    Tags given for an existing row are added to it and go to the index (`index_tags`, one
    call for them all): its search filters by the tags it holds. A new row's tags reach the
    index with its vector (the ingest upsert carries them)."""
    if not stored:
        return []
    try:
        body = call("POST", "/v1/images/batch", {"images": [{
            "sha256": item.sha256, "original_filename": item.filename[:255],
            "storage_key": item.key, "mime": item.mime, "width": item.width,
            "height": item.height, "bytes": item.bytes, "uploader": uploader, "tags": tags}
            for item in stored]})
    except BaseException:
        for item in stored:
            if item.new_file:
                discard(images_dir, item.key)
        raise
    results = [_settle(call, result) for result in body["results"]]
    if tags and index_tags is not None:
        retagged = {int(r["image"]["id"]): list(r["image"].get("tags") or [])
                    for r in body["results"]
                    if not r["created"] and r["image"].get("status") not in GONE}
        if retagged:
            index_tags(list(retagged), list(retagged.values()))
    return results


def _settle(call: CatalogCall, result: dict[str, Any]) -> Registered | ImageBeingDeleted:
    """What one row of `register_many` means for its file."""
    row: dict[str, Any] = result["image"]
    if result["created"]:
        return Registered(row, to_ingest=True, duplicate=False)
    image_id, status = int(row["id"]), row.get("status")
    if status in GONE:
        return ImageBeingDeleted(
            f"image {image_id} is being deleted; add it again when that has finished",
            detail={"id": image_id})
    if status == ImageStatus.failed:
        # A failed image added again is another try, not a duplicate.
        try:
            row = call("POST", f"/v1/images/{image_id}/transition",
                       {"from": ImageStatus.failed, "to": ImageStatus.pending})
        except DomainError as exc:
            if exc.status != 409:
                raise
            # Another upload of the same file retried it first: that one ingests it.
            return Registered(row, to_ingest=False, duplicate=True)
        return Registered(row, to_ingest=True, duplicate=False)
    # Adding a pending image again re-drives it: the upload may be what the user does because
    # its first task was lost.
    return Registered(row, to_ingest=status == ImageStatus.pending, duplicate=True)
