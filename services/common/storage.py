"""Where image files live: content-addressed keys under `$IMGSEARCH_DATA_DIR`.

A key is `<sha256[:2]>/<sha256>.<ext>`; the original filename is metadata only and never
becomes a path. `resolve` refuses anything that is not a well-formed key.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services.common.errors import DomainError

_KEY = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{64}\.(jpg|png|webp|gif|bmp|tif)$")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class InvalidStorageKey(DomainError):
    code = "invalid_storage_key"
    status = 400


class InvalidImageSha256(DomainError):
    code = "invalid_image_sha256"
    status = 422


def parse_sha256(value: str, field: str = "image_sha256") -> str:
    """An image's content hash from a client: 64 hex digits (either case) -> the lower-case
    digest the keys and the caches use; anything else is 422 invalid_image_sha256."""
    if not _SHA256.fullmatch(value):
        raise InvalidImageSha256(f"{field} must be 64 hexadecimal digits (the image_sha256 "
                                 "of an earlier answer)", detail={"field": field})
    return value.lower()


def image_key(sha256: str, ext: str) -> str:
    key = f"{sha256[:2]}/{sha256}.{ext}"
    if not _KEY.match(key):
        raise InvalidStorageKey(f"not a storage key: {key!r}")
    return key


def thumbnail_key(sha256: str) -> str:
    return image_key(sha256, "webp")


def resolve(root: Path, key: str) -> Path:
    """The file path of `key` under `root`; raises for anything but a well-formed key."""
    if not _KEY.match(key):
        raise InvalidStorageKey(f"not a storage key: {key!r}")
    return root / key


def write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file in the same folder, fsync, rename: never a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold `<path>.lock` exclusively: one writer of `path` among the processes sharing its
    folder (replicas on one data volume would otherwise interleave a download's .part)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(path.name + ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
