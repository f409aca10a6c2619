"""Sketch normalisation: position, scale, pen width and background do not matter."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from gateway.sketch import EmptySketch, normalise_sketch

LIMITS = {"max_bytes": 10_000_000, "max_pixels": 10_000_000}


def drawing(size: tuple[int, int], box: tuple[int, int, int, int], width: int,
            transparent: bool = False, colour: tuple[int, int, int] = (0, 0, 0)) -> bytes:
    mode, background = ("RGBA", (0, 0, 0, 0)) if transparent else ("RGB", (255, 255, 255))
    image = Image.new(mode, size, background)
    ImageDraw.Draw(image).ellipse(box, outline=colour, width=width)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def ink(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L")) < 128


def test_same_shape_same_result() -> None:
    small_left = normalise_sketch(drawing((400, 300), (10, 10, 110, 110), 2), **LIMITS)
    big_right_thick = normalise_sketch(
        drawing((800, 600), (400, 200, 700, 500), 14, transparent=True, colour=(200, 30, 30)),
        **LIMITS)
    a, b = ink(small_left), ink(big_right_thick)
    assert a.shape == b.shape == (224, 224)
    # Centred, the same size, the same line weight: the two drawings nearly coincide.
    def iou(x: np.ndarray, y: np.ndarray) -> float:
        return float((x & y).sum() / (x | y).sum())

    image = Image.new("RGB", (400, 300), "white")
    ImageDraw.Draw(image).line([(20, 250), (200, 20), (380, 250)], fill="black", width=3)
    out = io.BytesIO()
    image.save(out, format="PNG")
    other = ink(normalise_sketch(out.getvalue(), **LIMITS))
    assert iou(a, b) > 0.5
    assert iou(a, b) > 2 * iou(a, other)
    assert abs(int(a.sum()) - int(b.sum())) < 0.2 * a.sum()
    # White background, ink roughly centred.
    rows, cols = np.nonzero(a)
    assert abs(rows.mean() - 112) < 8 and abs(cols.mean() - 112) < 8
    assert Image.open(io.BytesIO(small_left)).getpixel((0, 0)) == (255, 255, 255)


def test_blank_canvas_is_refused() -> None:
    blank = io.BytesIO()
    Image.new("RGB", (300, 300), "white").save(blank, format="PNG")
    with pytest.raises(EmptySketch) as err:
        normalise_sketch(blank.getvalue(), **LIMITS)
    assert err.value.code == "empty_sketch" and err.value.status == 422
