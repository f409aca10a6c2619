"""Draw the demo gallery: six scene families, six variations each, seeded (same files on
every run). Families differ in colour and composition so search results group visibly:
sunsets, night skies, forests, seascapes, flowers and houses.

    python gallery/generate.py [--out gallery/demo] [--per-family 6]
"""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

W, H = 384, 288


def vertical_gradient(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGB", (W, H))
    draw = ImageDraw.Draw(image)
    for y in range(H):
        t = y / (H - 1)
        draw.line([(0, y), (W, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom,
                                                                                  strict=True)))
    return image


def jitter(colour: tuple[int, int, int], rng: random.Random, amount: int = 20,
           ) -> tuple[int, int, int]:
    r, g, b = (max(0, min(255, c + rng.randint(-amount, amount))) for c in colour)
    return (r, g, b)


def sunset(rng: random.Random) -> Image.Image:
    image = vertical_gradient(jitter((250, 120, 40), rng), jitter((120, 30, 90), rng))
    draw = ImageDraw.Draw(image)
    cx, cy, r = rng.randint(80, 300), rng.randint(110, 170), rng.randint(25, 45)
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=jitter((255, 220, 90), rng))
    horizon = rng.randint(180, 215)
    points = [(0, H)] + [(x, horizon - int(25 * math.sin(x / rng.uniform(30, 60))) -
                         rng.randint(0, 12)) for x in range(0, W + 16, 16)] + [(W, H)]
    draw.polygon(points, fill=jitter((40, 20, 40), rng, 10))
    return image


def night(rng: random.Random) -> Image.Image:
    image = vertical_gradient(jitter((5, 10, 40), rng, 8), jitter((20, 40, 90), rng, 10))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(60, 120)):
        x, y, s = rng.randint(0, W), rng.randint(0, H - 60), rng.choice((1, 1, 2))
        draw.ellipse([x, y, x + s, y + s], fill=(255, 255, rng.randint(200, 255)))
    mx, my, r = rng.randint(40, 340), rng.randint(30, 110), rng.randint(18, 30)
    draw.ellipse([mx - r, my - r, mx + r, my + r], fill=(240, 240, 215))
    draw.ellipse([mx - r + 10, my - r - 4, mx + r + 10, my + r - 4],
                 fill=image.getpixel((min(W - 1, mx + r + 12), my)))
    draw.rectangle([0, H - rng.randint(30, 50), W, H], fill=(10, 12, 20))
    return image


def forest(rng: random.Random) -> Image.Image:
    image = vertical_gradient(jitter((150, 200, 235), rng), jitter((200, 230, 200), rng))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, H - 60, W, H], fill=jitter((70, 120, 40), rng))
    for _ in range(rng.randint(7, 12)):
        x, base = rng.randint(-20, W + 20), H - rng.randint(20, 60)
        height, half = rng.randint(110, 200), rng.randint(25, 45)
        green = jitter((30, 100, 40), rng, 25)
        for level in range(3):
            top = base - height + level * height // 4
            draw.polygon([(x, top), (x - half, top + height // 2), (x + half, top + height // 2)],
                         fill=green)
        draw.rectangle([x - 5, base - height // 4, x + 5, base], fill=(90, 60, 30))
    return image


def seascape(rng: random.Random) -> Image.Image:
    image = vertical_gradient(jitter((120, 190, 250), rng), jitter((220, 240, 255), rng))
    draw = ImageDraw.Draw(image)
    sea = rng.randint(120, 160)
    draw.rectangle([0, sea, W, H], fill=jitter((20, 90, 160), rng))
    for row in range(sea + 10, H, 14):
        phase = rng.uniform(0, 6.3)
        pts = [(x, row + int(4 * math.sin(x / 12 + phase))) for x in range(0, W + 8, 8)]
        draw.line(pts, fill=jitter((200, 230, 250), rng, 15), width=2)
    if rng.random() < 0.7:
        bx = rng.randint(60, 300)
        draw.polygon([(bx - 40, sea + 20), (bx + 40, sea + 20), (bx + 28, sea + 34),
                      (bx - 28, sea + 34)], fill=(120, 60, 30))
        draw.polygon([(bx, sea - 50), (bx, sea + 18), (bx + 34, sea + 18)], fill=(250, 250, 245))
    return image


def flower(rng: random.Random) -> Image.Image:
    image = Image.new("RGB", (W, H), jitter((60, 140, 60), rng, 30))
    draw = ImageDraw.Draw(image)
    petal = jitter(rng.choice([(230, 60, 120), (250, 200, 40), (150, 80, 220)]), rng, 20)
    for _ in range(rng.randint(1, 3)):
        cx, cy, r = rng.randint(90, 290), rng.randint(80, 200), rng.randint(45, 75)
        n = rng.randint(5, 9)
        for i in range(n):
            a = 2 * math.pi * i / n
            px, py = cx + r * 0.7 * math.cos(a), cy + r * 0.7 * math.sin(a)
            draw.ellipse([px - r * 0.4, py - r * 0.4, px + r * 0.4, py + r * 0.4], fill=petal)
        draw.ellipse([cx - r * 0.3, cy - r * 0.3, cx + r * 0.3, cy + r * 0.3], fill=(250, 210, 60))
    return image.filter(ImageFilter.SMOOTH)


def house(rng: random.Random) -> Image.Image:
    image = vertical_gradient(jitter((170, 210, 240), rng), (245, 245, 240))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, H - 50, W, H], fill=jitter((110, 160, 70), rng))
    x0, w = rng.randint(60, 160), rng.randint(130, 180)
    y0, h = H - 50 - rng.randint(100, 130), 0
    h = H - 50 - y0
    wall = jitter((220, 200, 170), rng, 25)
    draw.rectangle([x0, y0, x0 + w, y0 + h], fill=wall, outline=(60, 40, 30), width=3)
    draw.polygon([(x0 - 15, y0), (x0 + w // 2, y0 - rng.randint(60, 90)), (x0 + w + 15, y0)],
                 fill=jitter((170, 50, 40), rng), outline=(60, 30, 20))
    draw.rectangle([x0 + w // 2 - 15, y0 + h - 50, x0 + w // 2 + 15, y0 + h],
                   fill=(100, 60, 30))
    for wx in (x0 + 18, x0 + w - 48):
        draw.rectangle([wx, y0 + 20, wx + 30, y0 + 50], fill=(150, 200, 240), outline=(60, 40, 30))
    return image


FAMILIES: dict[str, Callable[[random.Random], Image.Image]] = {
    "sunset": sunset, "night": night, "forest": forest, "seascape": seascape,
    "flower": flower, "house": house,
}


def generate(out: Path, per_family: int = 6, seed: int = 2024) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for family, draw in FAMILIES.items():
        for i in range(per_family):
            rng = random.Random(f"{seed}-{family}-{i}")
            path = out / f"{family}-{i + 1:02d}.jpg"
            draw(rng).save(path, format="JPEG", quality=88)
            paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "demo")
    parser.add_argument("--per-family", type=int, default=6)
    args = parser.parse_args()
    paths = generate(args.out, args.per_family)
    print(f"{len(paths)} images in {args.out}")


if __name__ == "__main__":
    main()
