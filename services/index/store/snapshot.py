"""Snapshots: the whole index state at log position `seq`, written atomically.

A snapshot is a directory `snap-<seq>/` (meta.json, ids.npy, vectors.npy and, for approximate
types, ann.faiss (`faiss.write_index`) + labels.npy; with tags, tag_ids.npy + tag_offsets.npy,
the names in meta.json: the members of tag i are tag_ids[offsets[i]:offsets[i + 1]]).
It is written as `.tmp-snap-<seq>/`, every file fsynced, then renamed and the parent
fsynced: a directory named `snap-*` is always complete. The writer runs while writes go
on: it reads a `FrozenState` in blocks of about `BLOCK_BYTES` (32 MB), each under a short
read lock, and streams them to the files.

A snapshot is read again only at a start, so its pages are synced and dropped from the page
cache as it is written (every `SYNC_BYTES` of rows, and the Faiss file), and its rows again
as a start reads them: at 10M vectors it is 15 GB, and cached it would evict the rows of
the vector file that searches re-rank.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from services.index.store.frozen import FrozenState, block_rows
from services.index.store.fsutil import drop_cached, fsync_dir

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]

SYNC_BYTES = 256 << 20  # rows written between a sync and a drop from the page cache


def _forget(handle: IO[bytes]) -> None:
    """Sync what was written to `handle` and drop its pages from the page cache."""
    handle.flush()
    os.fsync(handle.fileno())
    drop_cached(handle.fileno())


def _save(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_file(path: Path) -> None:
    """fsync `path` and drop its pages from the page cache."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
        drop_cached(handle.fileno())


def _npy_writer(path: Path, dtype: str, shape: tuple[int, ...]) -> IO[bytes]:
    """An open .npy file with its header written; the caller appends the C-order rows."""
    handle = open(path, "wb")  # noqa: SIM115 - closed by the caller
    np.lib.format.write_array_header_2_0(
        handle, {"descr": dtype, "fortran_order": False, "shape": shape})
    return handle


def _write_rows(tmp: Path, view: FrozenState, progress: Progress | None) -> None:
    """ids.npy (n,) int64 and vectors.npy (n, dim) of the frozen rows (float32, or float16
    from a disk store), by blocks."""
    assert view.dim is not None
    block = block_rows(view.dim)
    with _npy_writer(tmp / "ids.npy", "<i8", (view.rows,)) as ids_out, \
            _npy_writer(tmp / "vectors.npy", view.dtype, (view.rows, view.dim)) as vecs_out:
        unsynced = 0
        for start in range(0, view.rows, block):
            ids, vecs = view.read_rows(start, start + block)
            ids_out.write(np.ascontiguousarray(ids, "<i8").tobytes())
            data = np.ascontiguousarray(vecs, view.dtype).tobytes()
            vecs_out.write(data)
            unsynced += len(data)
            if unsynced >= SYNC_BYTES:
                _forget(vecs_out)
                unsynced = 0
            if progress is not None:
                progress("rows")
        for handle in (ids_out, vecs_out):
            _forget(handle)


def _snapshots(directory: Path) -> list[tuple[int, Path]]:
    out = []
    for path in directory.glob("snap-*"):
        if path.is_dir():
            try:
                out.append((int(path.name[5:]), path))
            except ValueError:
                continue
    return sorted(out)


def write_snapshot(directory: Path, seq: int, view: FrozenState,
                   progress: Progress | None = None) -> Path:
    """Write `view` (FaissIndex.freeze) covering log records <= seq; returns its path.

    `progress(stage)` is called after each block of rows ("rows") and after the Faiss file
    ("ann"): a hook for tests that make the write slow."""
    final = directory / f"snap-{seq:020d}"
    tmp = directory / f".tmp-snap-{seq:020d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    meta = dict(view.meta, seq=seq)
    if view.store is not None:
        _write_rows(tmp, view, progress)
    if view.tags:
        from services.index.store.tagsets import TagSets

        names, offsets, tag_ids = TagSets.to_arrays(view.tags)
        _save(tmp / "tag_offsets.npy", offsets)
        _save(tmp / "tag_ids.npy", tag_ids)
        meta["tags"] = names
    if view.ann is not None:
        labels = view.ann.write(tmp / "ann.faiss")
        _fsync_file(tmp / "ann.faiss")
        _save(tmp / "labels.npy", labels)
        meta["trained_at"] = view.ann.trained_at
        if progress is not None:
            progress("ann")
    with open(tmp / "meta.json", "w") as handle:
        json.dump(meta, handle)
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(tmp)
    if final.exists():  # the same seq snapshotted twice (no write in between)
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(directory)
    return final


def _vector_blocks(path: Path) -> Callable[[int], Iterator[tuple[int, np.ndarray]]]:
    """blocks(rows) -> (first row, (m, dim) float32 rows) of a .npy matrix, read with plain
    reads (a memory map would leave every page it touched counted in the process); the
    pages read are dropped from the page cache (read once, at a start)."""

    def blocks(step: int) -> Iterator[tuple[int, np.ndarray]]:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(handle)
            if fortran or len(shape) != 2:
                raise ValueError(f"{path}: not a C-order matrix")
            n, dim = shape
            for start in range(0, n, step):
                m = min(step, n - start)
                block = np.empty((m, dim), dtype=dtype)
                offset = handle.tell()
                if handle.readinto(block.data.cast("B")) != block.nbytes:
                    raise ValueError(f"{path}: truncated")
                drop_cached(handle.fileno(), offset, block.nbytes)
                yield start, block.astype(np.float32)

    return blocks


def load_latest(directory: Path) -> tuple[int, dict[str, Any]] | None:
    """(seq, state) of the newest snapshot, or None; half-written ones are removed.

    state: "meta"; "ids" (n,); "vectors" (n, dim) memory-mapped (for inspection) and
    "vector_blocks"(rows) yielding (first row, float32 block) for loading; "ann"; "tags"
    (names, offsets, ids) when the snapshot holds tags."""
    for tmp in directory.glob(".tmp-snap-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    snaps = _snapshots(directory)
    if not snaps:
        return None
    seq, path = snaps[-1]
    meta = json.loads((path / "meta.json").read_text())
    state: dict[str, Any] = {"meta": meta}
    if (path / "ids.npy").exists():
        state["ids"] = np.load(path / "ids.npy")
        state["vectors"] = np.load(path / "vectors.npy", mmap_mode="r")
        state["vector_blocks"] = _vector_blocks(path / "vectors.npy")
    if "tags" in meta and (path / "tag_ids.npy").exists():
        state["tags"] = (list(meta["tags"]), np.load(path / "tag_offsets.npy"),
                         np.load(path / "tag_ids.npy"))
    if (path / "ann.faiss").exists():
        state["ann"] = {"path": path / "ann.faiss"}
    elif (path / "ann.npy").exists():  # snapshots written before ann.faiss
        state["ann"] = {"index": np.load(path / "ann.npy")}
    if "ann" in state:
        state["ann"].update(label_ids=np.load(path / "labels.npy"),
                            trained_at=meta.get("trained_at", 0))
    return seq, state


def prune(directory: Path, keep_seq: int) -> None:
    """Delete snapshots older than `keep_seq`."""
    for seq, path in _snapshots(directory):
        if seq < keep_seq:
            shutil.rmtree(path, ignore_errors=True)
