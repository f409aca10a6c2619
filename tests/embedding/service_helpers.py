"""Images and requests shared by the embedding service tests."""

from __future__ import annotations

import base64
import io

import numpy as np
from numpy.typing import NDArray
from PIL import Image


def png(width: int = 224, height: int = 224, seed: int = 0) -> bytes:
    """A PNG of smooth random colour blobs (compresses well, differs by seed)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    image = Image.fromarray(small, mode="RGB").resize((width, height), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def flat_png(width: int, height: int) -> bytes:
    """A one-colour PNG: tiny file, many pixels (for the pixel limit)."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(out, format="PNG")
    return out.getvalue()


def vectors(body: dict[str, object]) -> NDArray[np.float32]:
    if "vectors_b64" in body:
        raw = base64.b64decode(str(body["vectors_b64"]))
        return np.frombuffer(raw, dtype="<f4").reshape(-1, int(str(body["dim"])))
    return np.asarray(body["vectors"], dtype=np.float32)


def patch_tokens(entry: dict[str, object], dim: int) -> NDArray[np.float32]:
    """One `patch_tokens` entry -> (gh, gw, dim) array."""
    grid = entry["grid"]
    assert isinstance(grid, list)
    gh, gw = int(grid[0]), int(grid[1])
    raw = base64.b64decode(str(entry["data_b64"]))
    return np.frombuffer(raw, dtype="<f4").reshape(gh, gw, dim)
