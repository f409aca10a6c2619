"""Small distinct test images drawn procedurally (seeded shapes on a gradient)."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw


def make_png(seed: int, size: int = 64) -> bytes:
    """A PNG of `size` x `size` pixels, different for every seed."""
    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), (rng.randrange(256), rng.randrange(256),
                                            rng.randrange(256)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = rng.randrange(size), rng.randrange(size)
        x1, y1 = x0 + rng.randrange(4, size // 2), y0 + rng.randrange(4, size // 2)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
