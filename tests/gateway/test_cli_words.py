"""The commands count in words: one image, two images."""

from __future__ import annotations

from imgsearch.commands._words import counted


def test_a_count_takes_its_noun_in_the_right_number() -> None:
    assert counted(1, "image") == "1 image"
    assert [counted(n, "file") for n in (0, 2, 16)] == ["0 files", "2 files", "16 files"]
    assert counted(3, "index", "indexes") == "3 indexes"
    assert counted(1, "index", "indexes") == "1 index"
