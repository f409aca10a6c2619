"""Sketch normalisation: a canvas drawing -> the image the embedding model sees.

Canvas PNGs differ in size, margin, pen width and colour, and a transparent background; none
of that is the user's intent. Steps: ink mask (anything clearly darker or more coloured than
the white/transparent background), crop to the strokes, pad to a square with a margin,
resample to `size` x `size`, thin the strokes to one pixel (Zhang-Suen) and redraw them with
an even width: black lines on white.
"""

from __future__ import annotations

import io

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFilter

from services.common.errors import DomainError
from services.common.images import decode_image


class EmptySketch(DomainError):
    code = "empty_sketch"
    status = 422


# An ink pixel differs from white by more than this (0..255, the largest channel difference).
INK_THRESHOLD = 48


def ink_mask(rgb: NDArray[np.uint8]) -> NDArray[np.bool_]:
    """(H, W, 3) uint8 on white -> (H, W) bool, True where there is ink."""
    return (255 - rgb.min(axis=2)).astype(np.int16) > INK_THRESHOLD


def _thin(mask: NDArray[np.bool_], max_iter: int = 64) -> NDArray[np.bool_]:
    """Zhang-Suen thinning of a (H, W) bool mask to one-pixel-wide strokes."""
    img = np.pad(mask.astype(np.uint8), 1)
    for _ in range(max_iter):
        changed = False
        for step in (0, 1):
            p = img
            # neighbours P2..P9, clockwise from north: (H, W) arrays of the inner image
            n = [p[:-2, 1:-1], p[:-2, 2:], p[1:-1, 2:], p[2:, 2:],
                 p[2:, 1:-1], p[2:, :-2], p[1:-1, :-2], p[:-2, :-2]]
            center = p[1:-1, 1:-1]
            b = sum(x.astype(np.int16) for x in n)
            seq = [*n, n[0]]
            a = sum(((seq[i] == 0) & (seq[i + 1] == 1)).astype(np.int16) for i in range(8))
            if step == 0:
                c1 = (n[0] * n[2] * n[4]) == 0
                c2 = (n[2] * n[4] * n[6]) == 0
            else:
                c1 = (n[0] * n[2] * n[6]) == 0
                c2 = (n[0] * n[4] * n[6]) == 0
            remove = (center == 1) & (b >= 2) & (b <= 6) & (a == 1) & c1 & c2
            if remove.any():
                changed = True
                inner = img[1:-1, 1:-1].copy()
                inner[remove] = 0
                img = np.pad(inner, 1)
        if not changed:
            break
    out: NDArray[np.bool_] = img[1:-1, 1:-1].astype(bool)
    return out


def normalise_sketch(data: bytes, *, size: int = 224, line_width: int = 5,
                     margin: float = 0.08, max_bytes: int, max_pixels: int) -> bytes:
    """Canvas image bytes -> PNG bytes of a `size` x `size` black-on-white line drawing."""
    rgb, _ = decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    arr = np.asarray(rgb, dtype=np.uint8)
    mask = ink_mask(arr)
    if not mask.any():
        raise EmptySketch("the sketch has no strokes")
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    crop = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = crop.shape
    side = int(max(h, w) * (1 + 2 * margin)) + 2
    square = np.zeros((side, side), dtype=np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    square[top:top + h, left:left + w] = crop * 255
    # Area resampling keeps thin strokes visible when shrinking; any coverage counts as ink.
    scaled = np.asarray(Image.fromarray(square).resize((size, size), Image.Resampling.BOX))
    skeleton = _thin(scaled > 40)
    lines = Image.fromarray(np.where(skeleton, 0, 255).astype(np.uint8), mode="L")
    if line_width > 1:
        # MinFilter grows the black strokes evenly to `line_width` pixels (odd kernel).
        lines = lines.filter(ImageFilter.MinFilter(line_width | 1))
    out = io.BytesIO()
    lines.convert("RGB").save(out, format="PNG")
    return out.getvalue()
