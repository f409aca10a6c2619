"""Preprocessing: sizes of both modes, normalisation, mode conversion."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from services.embedding.engine import IMAGENET_MEAN, IMAGENET_STD, preprocess, target_size


@pytest.mark.parametrize(("size", "expected"), [
    ((224, 224), (224, 224)),
    ((333, 517), (224, 350)),    # 517 * 224/333 = 347.8 -> 25 patches
    ((640, 480), (294, 224)),    # 298.7 -> 21 patches
    ((1000, 10), (22400, 224)),
    ((10, 7), (322, 224)),
])
def test_resize_short_side_keeps_aspect_on_patch_multiples(size: tuple[int, int],
                                                           expected: tuple[int, int]) -> None:
    assert target_size(*size, "resize_short_side", 224) == expected
    if max(expected) < 2000:
        pixels = preprocess(Image.new("RGB", size), "resize_short_side", 224)
        assert pixels.shape == (3, expected[1], expected[0]) and pixels.dtype == np.float32


def test_center_crop_is_square() -> None:
    pixels = preprocess(Image.new("RGB", (640, 480)), "center_crop", 224)
    assert pixels.shape == (3, 224, 224)
    assert target_size(640, 480, "center_crop", 230) == (224, 224)


def test_center_crop_takes_the_middle() -> None:
    image = Image.new("RGB", (300, 100), (0, 0, 0))
    image.paste((255, 255, 255), (100, 0, 200, 100))  # white middle third
    pixels = preprocess(image, "center_crop", 98)
    white = (1 - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)
    np.testing.assert_allclose(pixels[:, 49, 49], white, rtol=1e-5)


def test_imagenet_normalisation() -> None:
    pixels = preprocess(Image.new("RGB", (28, 28), (255, 0, 128)), "resize_short_side", 28)
    expected = (np.array([255, 0, 128]) / 255 - np.asarray(IMAGENET_MEAN)) / np.asarray(
        IMAGENET_STD)
    np.testing.assert_allclose(pixels[:, 5, 5], expected, rtol=1e-5)


def test_grayscale_and_rgba_become_rgb() -> None:
    gray = preprocess(Image.new("L", (30, 30), 200), "center_crop", 28)
    assert gray.shape == (3, 28, 28)
    assert np.allclose(gray[0] * IMAGENET_STD[0] + IMAGENET_MEAN[0], 200 / 255, atol=1e-5)
    rgba = preprocess(Image.new("RGBA", (30, 30), (10, 20, 30, 255)), "center_crop", 28)
    assert rgba.shape == (3, 28, 28)


def test_unknown_mode_refused() -> None:
    with pytest.raises(ValueError, match="unknown resize mode"):
        preprocess(Image.new("RGB", (30, 30)), "stretch", 28)
