"""Vectors on the wire: base64 of little-endian float32, or JSON lists."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.common.errors import DomainError


class InvalidVectors(DomainError):
    code = "invalid_vectors"
    status = 422


def encode_b64(array: NDArray[np.float32]) -> str:
    """(…) float32 array -> base64 of its little-endian bytes (shape travels separately)."""
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def decode_b64(text: str, dim: int) -> NDArray[np.float32]:
    """base64 float32 -> (n, dim) array; the byte count must be a whole number of rows."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as exc:
        raise InvalidVectors("vectors_b64 is not valid base64") from exc
    if dim <= 0 or len(raw) % (4 * dim):
        raise InvalidVectors(f"{len(raw)} bytes is not a whole number of {dim}-d float32 rows")
    return np.frombuffer(raw, dtype="<f4").reshape(-1, dim).astype(np.float32)


def parse_vectors(
    vectors: list[list[float]] | None, vectors_b64: str | None, dim: int | None
) -> NDArray[np.float32]:
    """Either form -> a finite (n, d) float32 array; `dim` is required for base64."""
    if (vectors is None) == (vectors_b64 is None):
        raise InvalidVectors("give exactly one of vectors or vectors_b64")
    if vectors_b64 is not None:
        if dim is None:
            raise InvalidVectors("dim is required with vectors_b64")
        array = decode_b64(vectors_b64, dim)
    else:
        try:
            array = np.asarray(vectors, dtype=np.float32)
        except (ValueError, TypeError) as exc:
            raise InvalidVectors("vectors must be a list of equal-length number lists") from exc
        if array.ndim != 2:
            raise InvalidVectors("vectors must be a list of equal-length number lists")
    if array.size and not np.isfinite(array).all():
        raise InvalidVectors("vectors contain NaN or infinity")
    return array


def l2_normalize(array: NDArray[np.float32], axis: int = -1) -> NDArray[np.float32]:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(array, axis=axis, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    out: NDArray[np.float32] = (array / norms).astype(np.float32, copy=False)
    return out


def as_json_lists(array: NDArray[np.float32]) -> list[Any]:
    out: list[Any] = array.astype(np.float32).tolist()
    return out
