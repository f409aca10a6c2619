"""Draws the bundled selfcheck images (run from anywhere; writes next to this file).

Every picture is drawn here with Pillow from fixed numbers: no photograph, no third-party
content. The set varies aspect ratio, colour and structure so that a wrong position-embedding
interpolation, patch layout or normalisation shows up as a feature difference.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent


def landscape() -> Image.Image:
    """320x240: a sky gradient, a sun, layered hills, a lake."""
    w, h = 320, 240
    image = Image.new("RGB", (w, h))
    draw = ImageDraw.Draw(image)
    for y in range(h):
        t = y / h
        draw.line([(0, y), (w, y)], fill=(int(255 * (1 - t) + 60 * t), int(140 + 60 * t),
                                          int(90 + 150 * t)))
    draw.ellipse([210, 30, 270, 90], fill=(255, 230, 120))
    for layer, (base, amp, colour) in enumerate(
            [(150, 18, (70, 110, 70)), (175, 12, (40, 90, 50)), (200, 8, (30, 60, 35))]):
        points = [(x, base + amp * math.sin(x / (25 + 10 * layer) + layer)) for x in range(w + 1)]
        draw.polygon([(0, h), *points, (w, h)], fill=colour)
    draw.ellipse([40, 195, 200, 235], fill=(80, 130, 200))
    return image


def shapes() -> Image.Image:
    """256x256: coloured discs, rectangles and triangles on grey."""
    image = Image.new("RGB", (256, 256), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    draw.ellipse([20, 20, 110, 110], fill=(220, 40, 40))
    draw.rectangle([140, 30, 230, 100], fill=(40, 160, 220))
    draw.polygon([(40, 230), (120, 130), (200, 230)], fill=(250, 200, 30))
    draw.ellipse([170, 150, 240, 220], outline=(20, 20, 20), width=6)
    return image


def stripes() -> Image.Image:
    """200x300 (portrait): diagonal stripes and a checkerboard band."""
    h, w = 300, 200
    y, x = np.mgrid[0:h, 0:w]
    palette = np.array([(200, 80, 160), (60, 200, 120), (250, 250, 250)], dtype=np.uint8)
    out = palette[((x + y) // 16) % 3]  # (h, w, 3)
    band = (y >= 120) & (y < 180)
    on = ((x // 20) + (y // 20)) % 2 == 0
    out[band & on] = (240, 240, 240)
    out[band & ~on] = (20, 20, 60)
    return Image.fromarray(out, mode="RGB")


def sketch() -> Image.Image:
    """240x240: a black line drawing of a cat's face on white, like a user's sketch."""
    image = Image.new("RGB", (240, 240), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.ellipse([50, 70, 190, 200], outline=(0, 0, 0), width=5)
    draw.line([(60, 100), (70, 30), (110, 75)], fill=(0, 0, 0), width=5)
    draw.line([(130, 75), (170, 30), (180, 100)], fill=(0, 0, 0), width=5)
    draw.ellipse([85, 115, 100, 130], fill=(0, 0, 0))
    draw.ellipse([140, 115, 155, 130], fill=(0, 0, 0))
    draw.polygon([(112, 145), (128, 145), (120, 155)], fill=(0, 0, 0))
    for dy in (-8, 0, 8):
        draw.line([(100, 152 + dy // 2), (30, 145 + dy)], fill=(0, 0, 0), width=2)
        draw.line([(140, 152 + dy // 2), (210, 145 + dy)], fill=(0, 0, 0), width=2)
    return image


def main() -> None:
    landscape().save(HERE / "landscape.png", optimize=True)
    shapes().save(HERE / "shapes.jpg", quality=90)
    stripes().save(HERE / "stripes.png", optimize=True)
    sketch().save(HERE / "sketch.png", optimize=True)


if __name__ == "__main__":
    main()
