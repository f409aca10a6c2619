"""Small durable-file helpers: fsync a directory, write a small file atomically, drop a file's
pages from the page cache."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` durable (the directory entry itself)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomic(path: Path, data: bytes) -> None:
    """Temporary file, fsync, rename over `path`, fsync the directory."""
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def drop_cached(fd: int, offset: int = 0, length: int = 0) -> None:
    """Drop the clean pages of [offset, offset + length) of the open file `fd` from the page
    cache (length 0: to the end); a no-op where the platform has no posix_fadvise."""
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
