"""SAM's low-resolution mask logits on the wire. The masks themselves (PNG, RLE, boxes) go
through the one codec every service shares, `services.common.masks`."""

from __future__ import annotations

import base64

import numpy as np
from numpy.typing import NDArray

from services.segmentation.predictor.errors import InvalidPrompts

# SAM's low-resolution mask logits: one 256x256 float32 plane.
LOW_RES = 256


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
