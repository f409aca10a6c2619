"""Image -> normalised (3, H, W) float32 pixels, H and W multiples of the patch size.

Modes (the original README's):
- `resize_short_side`: the short side becomes `size`, the aspect ratio is kept, and both sides
  are rounded to the nearest multiple of 14 (at least 14), so no pixel is cropped away;
- `center_crop`: the short side becomes `size`, then the central `size` x `size` square.
Resizing is PIL's bicubic; normalisation uses the ImageNet mean and std.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PATCH = 14

ResizeMode = Literal["resize_short_side", "center_crop"]
RESIZE_MODES: tuple[str, ...] = ("resize_short_side", "center_crop")


def _round_to_patch(value: float) -> int:
    return max(PATCH, round(value / PATCH) * PATCH)


def target_size(width: int, height: int, mode: str = "resize_short_side",
                size: int = 224) -> tuple[int, int]:
    """The (width, height) the model sees for an image of `width` x `height`."""
    if mode == "center_crop":
        side = _round_to_patch(size)
        return side, side
    if mode != "resize_short_side":
        raise ValueError(f"unknown resize mode {mode!r}; use one of {RESIZE_MODES}")
    scale = size / min(width, height)
    return _round_to_patch(width * scale), _round_to_patch(height * scale)


def preprocess(image: Image.Image, mode: str = "resize_short_side",
               size: int = 224) -> NDArray[np.float32]:
    """PIL image (converted to RGB if needed) -> (3, H, W) float32, ImageNet-normalised."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ValueError("the image has no pixels")
    if mode == "center_crop":
        side = _round_to_patch(size)
        scale = side / min(width, height)
        new_w = max(side, round(width * scale))
        new_h = max(side, round(height * scale))
        resized = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
        left, top = (new_w - side) // 2, (new_h - side) // 2
        resized = resized.crop((left, top, left + side, top + side))
    else:
        resized = image.resize(target_size(width, height, mode, size), Image.Resampling.BICUBIC)
    pixels = np.asarray(resized, dtype=np.float32) * np.float32(1 / 255)
    pixels -= np.asarray(IMAGENET_MEAN, dtype=np.float32)
    pixels /= np.asarray(IMAGENET_STD, dtype=np.float32)
    out: NDArray[np.float32] = np.ascontiguousarray(pixels.transpose(2, 0, 1))
    return out
