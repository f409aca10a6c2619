"""Snapshots: the whole index state at log position `seq`, written atomically.

A snapshot is a directory `snap-<seq>/` (meta.json, ids.npy, vectors.npy and, for approximate
types, ann.npy + labels.npy holding the serialised Faiss index). It is written as
`.tmp-snap-<seq>/`, every file fsynced, then renamed and the parent fsynced: a directory
named `snap-*` is always complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from services.index.store.fsutil import fsync_dir

logger = logging.getLogger(__name__)


def _save(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())


def _snapshots(directory: Path) -> list[tuple[int, Path]]:
    out = []
    for path in directory.glob("snap-*"):
        if path.is_dir():
            try:
                out.append((int(path.name[5:]), path))
            except ValueError:
                continue
    return sorted(out)


def write_snapshot(directory: Path, seq: int, state: dict[str, Any]) -> Path:
    """Write `state` (FaissIndex.export_state) covering log records <= seq; returns its path."""
    final = directory / f"snap-{seq:020d}"
    tmp = directory / f".tmp-snap-{seq:020d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    meta = dict(state["meta"], seq=seq)
    if "ids" in state:
        _save(tmp / "ids.npy", state["ids"])
        _save(tmp / "vectors.npy", state["vectors"])
    if "ann" in state:
        _save(tmp / "ann.npy", np.asarray(state["ann"]["index"], dtype=np.uint8))
        _save(tmp / "labels.npy", state["ann"]["label_ids"])
        meta["trained_at"] = state["ann"]["trained_at"]
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


def load_latest(directory: Path) -> tuple[int, dict[str, Any]] | None:
    """(seq, state) of the newest snapshot, or None; half-written ones are removed."""
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
        state["vectors"] = np.load(path / "vectors.npy")
    if (path / "ann.npy").exists():
        state["ann"] = {"index": np.load(path / "ann.npy"),
                        "label_ids": np.load(path / "labels.npy"),
                        "trained_at": meta.get("trained_at", 0)}
    return seq, state


def prune(directory: Path, keep_seq: int) -> None:
    """Delete snapshots older than `keep_seq`."""
    for seq, path in _snapshots(directory):
        if seq < keep_seq:
            shutil.rmtree(path, ignore_errors=True)
