"""Masks on the wire: PNG (base64), COCO-style uncompressed RLE, bounding boxes, logits.

Boxes are `[x0, y0, x1, y1]` in image pixels with exclusive ends: the mask's pixels satisfy
x0 <= x < x1 and y0 <= y < y1 (so x1 - x0 is the width). An empty mask has no box (None).
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from services.segmentation.predictor.errors import InvalidPrompts

# SAM's low-resolution mask logits: one 256x256 float32 plane.
LOW_RES = 256


def mask_box(mask: NDArray[np.bool_]) -> list[int] | None:
    """(H, W) bool -> [x0, y0, x1, y1] (exclusive ends) of its True pixels, None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]


def encode_png(mask: NDArray[np.bool_]) -> str:
    """(H, W) bool -> base64 of an 8-bit grayscale PNG (0 background, 255 object).

    zlib level 1: half the time of the default level for a mask; the file is a little larger
    (it is a preview, sent once)."""
    buffer = io.BytesIO()
    pixels = np.asarray(mask, dtype=bool).view(np.uint8) * np.uint8(255)
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_png(text: str) -> NDArray[np.bool_]:
    """The inverse of `encode_png`: (H, W) bool."""
    with Image.open(io.BytesIO(base64.b64decode(text))) as image:
        return np.asarray(image.convert("L")) >= 128


def encode_rle(mask: NDArray[np.bool_]) -> dict[str, Any]:
    """(H, W) bool -> COCO uncompressed RLE `{"size": [H, W], "counts": [...]}`.

    Runs over the column-major (Fortran order) pixels, alternating 0s and 1s, starting with
    the count of 0s (which is 0 when the first pixel is set). Whole-array passes over bytes:
    a noisy 640x480 mask (50k runs) takes well under a millisecond.
    """
    h, w = mask.shape
    flat = np.ascontiguousarray(np.asarray(mask, dtype=bool).T).reshape(-1).view(np.uint8)
    if flat.size == 0:
        return {"size": [int(h), int(w)], "counts": []}
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.empty(changes.size + 2, dtype=np.int64)
    bounds[0], bounds[-1] = 0, flat.size
    bounds[1:-1] = changes
    counts: list[int] = np.diff(bounds).tolist()
    if flat[0]:
        counts.insert(0, 0)
    return {"size": [int(h), int(w)], "counts": counts}


def decode_rle(rle: dict[str, Any]) -> NDArray[np.bool_]:
    """The inverse of `encode_rle`: (H, W) bool."""
    h, w = (int(v) for v in rle["size"])
    counts = np.asarray(rle["counts"], dtype=np.int64)
    values = np.arange(counts.size) % 2 == 1
    flat = np.repeat(values, counts)
    return flat.reshape((h, w), order="F")


def encode_logits(logits: NDArray[np.float32]) -> str:
    """(256, 256) float32 low-resolution logits -> base64 little-endian float32."""
    array = np.ascontiguousarray(logits, dtype="<f4")
    return base64.b64encode(array.tobytes()).decode("ascii")


def decode_logits(text: str) -> NDArray[np.float32]:
    """base64 of a previous answer's `low_res_mask_b64` -> (1, 256, 256) float32."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as exc:
        raise InvalidPrompts("mask_input_b64 is not valid base64") from exc
    if len(raw) != LOW_RES * LOW_RES * 4:
        raise InvalidPrompts(
            f"mask_input_b64 must hold {LOW_RES}x{LOW_RES} float32 values "
            f"({LOW_RES * LOW_RES * 4} bytes), got {len(raw)} bytes")
    array = np.frombuffer(raw, dtype="<f4").reshape(1, LOW_RES, LOW_RES).astype(np.float32)
    if not np.isfinite(array).all():
        raise InvalidPrompts("mask_input_b64 contains NaN or infinity")
    return array
