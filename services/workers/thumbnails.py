"""WebP thumbnails for the results grid, written atomically under `$IMGSEARCH_DATA_DIR/thumbs`."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from services.common.images import decode_image
from services.common.storage import resolve, thumbnail_key, write_atomic


def render_thumbnail(data: bytes, *, size: int, quality: int, max_bytes: int,
                     max_pixels: int) -> bytes:
    """Image file bytes -> WebP bytes whose longer side is at most `size` pixels.

    EXIF orientation is applied and alpha composited on white (via `decode_image`).
    """
    image, _ = decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="WEBP", quality=quality, method=4)
    return out.getvalue()


def ensure_thumbnail(thumbs_dir: Path, sha256: str, data: bytes, *, size: int, quality: int,
                     max_bytes: int, max_pixels: int) -> str:
    """Write the thumbnail of image `sha256` unless it exists; returns its key.

    The key is content-addressed, so an existing file is the same thumbnail (a re-run after a
    crash finds it and skips the work; the atomic write never leaves a torn file).
    """
    key = thumbnail_key(sha256)
    path = resolve(thumbs_dir, key)
    if not path.is_file():
        write_atomic(path, render_thumbnail(data, size=size, quality=quality,
                                            max_bytes=max_bytes, max_pixels=max_pixels))
    return key
