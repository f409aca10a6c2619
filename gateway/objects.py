"""Object queries from a mask: the two ways to turn "this object" into one query vector.

(a) `masked_crop`: the object's pixels, the rest filled with a neutral colour, cropped to
    its box with a margin; the crop is then embedded like any query image (one more forward).
(b) `pool_patch_tokens`: the query image's DINOv2 patch tokens averaged under the mask,
    weighted by how much of each patch the mask covers (no second forward).

Masks are (H, W) bool at the image's size; boxes are `[x0, y0, x1, y1]` in pixels with
exclusive ends, as the segmentation service returns them (the codec and its errors are
`services.common.masks`). Pure NumPy and PIL.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from services.common.masks import EmptyMask, InvalidMask, mask_box

# DINOv2's normalisation mean (ImageNet) in 8-bit RGB: after normalisation the filled
# background is zero, the least informative input the model can see.
NEUTRAL_FILL = (124, 116, 104)


def _check_mask(mask: NDArray[Any], height: int, width: int) -> NDArray[np.bool_]:
    if mask.shape != (height, width):
        raise InvalidMask(f"the mask is {mask.shape[::-1]} (w, h) but the image is "
                          f"{(width, height)}")
    return np.asarray(mask, dtype=bool)


def masked_crop(
    image: Image.Image,
    mask: NDArray[np.bool_],
    box: Sequence[float] | None = None,
    margin: float = 0.1,
    fill: tuple[int, int, int] = NEUTRAL_FILL,
) -> Image.Image:
    """The object alone: pixels outside `mask` set to `fill`, cropped to `box` grown by
    `margin` (a fraction of the box's width and height on each side), clipped to the image.

    image: RGB, W x H. mask: (H, W) bool. box: [x0, y0, x1, y1] (None: the mask's box).
    Returns an RGB image of the crop's size.
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    width, height = image.size
    mask = _check_mask(mask, height, width)
    if not mask.any():
        raise EmptyMask("the mask selects no pixel")
    if box is None:
        box = mask_box(mask) or []
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise InvalidMask("the box must be four finite numbers [x0, y0, x1, y1]")
    if margin < 0 or not math.isfinite(margin):
        raise InvalidMask("the margin must be a finite number >= 0")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0):
        raise InvalidMask(f"the box {list(box)} is empty or inverted")
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    left, top = max(0, math.floor(x0 - mx)), max(0, math.floor(y0 - my))
    right, bottom = min(width, math.ceil(x1 + mx)), min(height, math.ceil(y1 + my))
    if right <= left or bottom <= top:
        raise InvalidMask(f"the box {list(box)} lies outside the {width}x{height} image")
    pixels = np.array(image.crop((left, top, right, bottom)), dtype=np.uint8)  # (h, w, 3)
    pixels[~mask[top:bottom, left:right]] = np.asarray(fill, dtype=np.uint8)
    return Image.fromarray(pixels, mode="RGB")


def _area_weights(cells: int, pixels: float, lo: float) -> NDArray[np.float32]:
    """(cells, n) matrix: the fraction of cell i's extent covered by pixel j, where `cells`
    equal cells tile [lo, lo + pixels) and the pixels are [j, j + 1) for j < ceil(lo+pixels)."""
    n = math.ceil(lo + pixels)
    size = pixels / cells
    start = lo + np.arange(cells, dtype=np.float64)[:, None] * size  # (cells, 1)
    j = np.arange(n, dtype=np.float64)[None, :]  # (1, n)
    overlap = np.minimum(j + 1, start + size) - np.maximum(j, start)
    return (np.clip(overlap, 0.0, None) / size).astype(np.float32)


def patch_coverage(
    mask: NDArray[np.bool_], grid: tuple[int, int],
    grid_box: Sequence[float] | None = None,
) -> NDArray[np.float32]:
    """The fraction (0..1) of each patch cell's area the mask covers: (gh, gw) float32.

    The patch grid tiles `grid_box` ([x0, y0, x1, y1] of the image the embedding saw; None:
    the whole image, as with the embedding service's resize_short_side mode).
    """
    h, w = mask.shape
    gh, gw = grid
    x0, y0, x1, y1 = (0.0, 0.0, float(w), float(h)) if grid_box is None else (
        float(v) for v in grid_box)
    ry = _area_weights(gh, y1 - y0, y0)  # (gh, ceil(y1))
    rx = _area_weights(gw, x1 - x0, x0)  # (gw, ceil(x1))
    m = np.zeros((ry.shape[1], rx.shape[1]), dtype=np.float32)
    rows, cols = min(h, m.shape[0]), min(w, m.shape[1])
    m[:rows, :cols] = mask[:rows, :cols]
    coverage: NDArray[np.float32] = (ry @ m @ rx.T).astype(np.float32)  # (gh, gw)
    return coverage


def pool_patch_tokens(
    patch: NDArray[np.float32],
    mask: NDArray[np.bool_],
    min_coverage: float = 0.5,
    grid_box: Sequence[float] | None = None,
) -> NDArray[np.float32]:
    """One L2-normalised (D,) vector: the patch tokens under the mask.

    patch: (gh, gw, D) float32 tokens of the whole query image. mask: (H, W) bool.
    Each patch whose cell the mask covers by at least `min_coverage` counts with its
    coverage as weight; when none does (an object smaller than a patch), the patch nearest
    the mask's centroid stands for it.
    """
    if patch.ndim != 3:
        raise InvalidMask(f"patch tokens must be (gh, gw, D), got shape {patch.shape}")
    gh, gw, _ = patch.shape
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise InvalidMask(f"the mask must be (H, W), got shape {mask.shape}")
    if not mask.any():
        raise EmptyMask("the mask selects no pixel")
    coverage = patch_coverage(mask, (gh, gw), grid_box)
    weights = np.where(coverage >= min_coverage, coverage, 0.0).astype(np.float32)
    if not weights.any():
        h, w = mask.shape
        ys, xs = np.nonzero(mask)
        x0, y0, x1, y1 = (0.0, 0.0, float(w), float(h)) if grid_box is None else (
            float(v) for v in grid_box)
        # Pixel centres are at +0.5; clip: the centroid may fall outside a cropped grid.
        gy = int(np.clip((ys.mean() + 0.5 - y0) / (y1 - y0) * gh, 0, gh - 1))
        gx = int(np.clip((xs.mean() + 0.5 - x0) / (x1 - x0) * gw, 0, gw - 1))
        weights[gy, gx] = 1.0
    pooled = np.tensordot(weights, patch.astype(np.float32), axes=([0, 1], [0, 1]))  # (D,)
    norm = float(np.linalg.norm(pooled))
    if norm == 0.0 or not math.isfinite(norm):
        raise InvalidMask("the pooled patch tokens have no direction (zero or not finite)")
    out: NDArray[np.float32] = (pooled / norm).astype(np.float32)
    return out
