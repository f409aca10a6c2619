"""Tag names: the one comparison rule the catalog stores and the index matches by."""

from __future__ import annotations


def tag_key(name: str) -> str:
    """The stored form of a tag name: trimmed and lower-cased, so `Cat` is `cat` on every
    backend and in the index's tag sets."""
    return name.strip().lower()
