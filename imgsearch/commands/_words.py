"""How the commands count things in a sentence."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and its noun in the number it takes: "1 image", "0 images", "3 images"."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
