"""gateway/objects.py: masked crops and patch-token pooling, against hand computations; the
shared mask codec (services/common/masks.py) on good and bad input."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from gateway.objects import NEUTRAL_FILL, masked_crop, patch_coverage, pool_patch_tokens
from services.common.masks import EmptyMask, InvalidMask, decode_png, decode_rle, mask_box


def _image(w: int, h: int) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def test_masked_crop_geometry_and_fill() -> None:
    image = _image(100, 80)
    mask = np.zeros((80, 100), bool)
    mask[20:40, 30:70] = True  # box [30, 20, 70, 40]: 40 wide, 20 high
    mask[25, 35] = False  # a hole: filled too
    crop = masked_crop(image, mask, [30, 20, 70, 40], margin=0.1)
    # margin 10% of 40 = 4 px left/right, 10% of 20 = 2 px top/bottom
    assert crop.size == (48, 24)
    pixels = np.asarray(crop)
    source = np.asarray(image)[18:42, 26:74]
    inside = mask[18:42, 26:74]
    assert (pixels[inside] == source[inside]).all()
    assert (pixels[~inside] == NEUTRAL_FILL).all()
    assert tuple(pixels[25 - 18, 35 - 26]) == NEUTRAL_FILL


def test_masked_crop_clips_to_the_image_and_defaults_to_the_mask_box() -> None:
    image = _image(50, 40)
    mask = np.zeros((40, 50), bool)
    mask[0:10, 45:50] = True
    crop = masked_crop(image, mask, margin=0.5, fill=(1, 2, 3))
    # box [45, 0, 50, 10], margin 2.5 x 5 -> [42, 0, 50, 15] after clipping
    assert crop.size == (8, 15)
    assert (np.asarray(crop)[10:, :] == (1, 2, 3)).all()


def test_masked_crop_refuses_bad_masks_and_boxes() -> None:
    image = _image(20, 10)
    with pytest.raises(EmptyMask) as empty:
        masked_crop(image, np.zeros((10, 20), bool))
    assert empty.value.code == "empty_mask"
    with pytest.raises(InvalidMask) as wrong:
        masked_crop(image, np.ones((20, 10), bool))
    assert wrong.value.code == "invalid_mask"
    with pytest.raises(InvalidMask):
        masked_crop(image, np.ones((10, 20), bool), [5, 5, 2, 8])


def test_patch_coverage_by_area() -> None:
    # A 4x6 image on a 2x3 grid: each cell is 2x2 pixels.
    mask = np.zeros((4, 6), bool)
    mask[0:2, 0:2] = True  # cell (0, 0) fully
    mask[3, 2] = True  # one pixel of cell (1, 1)
    cov = patch_coverage(mask, (2, 3))
    expected = np.array([[1.0, 0.0, 0.0], [0.0, 0.25, 0.0]], np.float32)
    np.testing.assert_allclose(cov, expected, atol=1e-6)


def test_patch_coverage_with_cells_not_aligned_to_pixels() -> None:
    # 3 pixels wide on 2 cells: cell 0 is [0, 1.5), cell 1 is [1.5, 3).
    mask = np.array([[False, True, False]])
    cov = patch_coverage(mask, (1, 2))
    np.testing.assert_allclose(cov, [[0.5 / 1.5, 0.5 / 1.5]], atol=1e-6)


def test_pool_patch_tokens_is_the_coverage_weighted_mean() -> None:
    rng = np.random.default_rng(1)
    patch = rng.standard_normal((2, 3, 5)).astype(np.float32)
    mask = np.zeros((4, 6), bool)
    mask[0:2, 0:2] = True  # cell (0, 0): coverage 1
    mask[2:4, 2:3] = True  # cell (1, 1): coverage 0.5
    mask[3, 5] = True  # cell (1, 2): coverage 0.25, under min_coverage
    by_hand = 1.0 * patch[0, 0] + 0.5 * patch[1, 1]
    by_hand /= np.linalg.norm(by_hand)
    pooled = pool_patch_tokens(patch, mask, min_coverage=0.5)
    assert pooled.shape == (5,) and pooled.dtype == np.float32
    np.testing.assert_allclose(pooled, by_hand, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(pooled), 1.0, atol=1e-6)


def test_pool_patch_tokens_falls_back_to_the_nearest_patch() -> None:
    rng = np.random.default_rng(2)
    patch = rng.standard_normal((4, 4, 8)).astype(np.float32)
    mask = np.zeros((64, 64), bool)
    mask[40:42, 20:22] = True  # 4 pixels of cell (2, 1) (cells are 16x16)
    pooled = pool_patch_tokens(patch, mask, min_coverage=0.5)
    expected = patch[2, 1] / np.linalg.norm(patch[2, 1])
    np.testing.assert_allclose(pooled, expected, atol=1e-6)
    with pytest.raises(EmptyMask):
        pool_patch_tokens(patch, np.zeros((64, 64), bool))


def test_mask_decoders_round_trip() -> None:
    mask = np.zeros((3, 4), bool)
    mask[0, 0] = mask[1, 0] = mask[2, 3] = True
    # Column-major: col 0 = 1,1,0; cols 1-2 = 0; col 3 = 0,0,1 -> runs 0:0, 1:2, 0:9, 1:1
    assert (decode_rle({"size": [3, 4], "counts": [0, 2, 9, 1]}) == mask).all()
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255, "L").save(buffer, "PNG")
    assert (decode_png(base64.b64encode(buffer.getvalue()).decode()) == mask).all()
    assert mask_box(mask) == [0, 0, 4, 3]
    with pytest.raises(InvalidMask):
        decode_rle({"size": [3, 4], "counts": [1, 2]})
    with pytest.raises(InvalidMask):
        decode_png("not base64!")
    # Valid base64 that is not a PNG: the same error, never a 500.
    with pytest.raises(InvalidMask):
        decode_png(base64.b64encode(b"GIF89a not really").decode())
    with pytest.raises(InvalidMask):
        decode_rle({"size": [100_000, 100_000], "counts": [10**10]})
