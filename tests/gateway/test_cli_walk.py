"""`imgsearch ingest`'s folder walk: a fixed order, and resuming after a path skips exactly
what came before it (whole folders unlisted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgsearch.commands.ingest import walk


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel in ["b.png", "a/2.jpg", "a/1.png", "a/sub/x.webp", "a.png", "c/d/e.PNG",
                "notes.txt", ".hidden.png", ".cache/h.png", "c/z.gif"]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return tmp_path


ORDER = ["a/1.png", "a/2.jpg", "a/sub/x.webp", "a.png", "b.png", "c/d/e.PNG", "c/z.gif"]


def test_walk_is_ordered_by_path_and_keeps_image_files_only(tree: Path) -> None:
    found = [("/".join(parts), path) for parts, path in walk(tree)]
    assert [rel for rel, _ in found] == ORDER
    assert all(path == tree / rel for rel, path in found)


@pytest.mark.parametrize("cut", range(len(ORDER)))
def test_walk_after_a_path_continues_exactly_after_it(tree: Path, cut: int) -> None:
    after = tuple(ORDER[cut].split("/"))
    assert ["/".join(parts) for parts, _ in walk(tree, after)] == ORDER[cut + 1:]


def test_walk_after_a_vanished_path_keeps_the_order(tree: Path) -> None:
    assert ["/".join(p) for p, _ in walk(tree, ("a", "sub", "y.png"))] == ORDER[3:]
    assert ["/".join(p) for p, _ in walk(tree, ("bb",))] == ORDER[5:]


def test_walk_is_lazy(tree: Path) -> None:
    files = walk(tree)
    assert "/".join(next(files)[0]) == "a/1.png"  # nothing else needed to get the first
