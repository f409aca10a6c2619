"""Generations of the index: the live one that serves, and an optional staging one that a
reindex fills while the live one keeps serving.

Layout of the index directory:

    CURRENT          name of the live generation (written atomically)
    STAGING          name of the staging generation, when one exists
    gen-000001/      a generation: generation.json, wal-*.log, snap-*/

While a staging generation exists, live upserts of its model and every live delete go to it
too. Commit makes it live by rewriting CURRENT (temporary file, fsync, rename, fsync dir);
a crash before the rename keeps the old live generation, after it the new one.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.index.config import IndexSettings
from services.index.store.errors import StagingNotFound
from services.index.store.factory import open_generation
from services.index.store.fsutil import fsync_dir, write_file_atomic
from services.index.store.params import check_type
from services.index.store.protocol import Ids, IndexStats, VectorIndex, Vectors
from services.index.store.rwlock import RWLock

logger = logging.getLogger(__name__)

CURRENT = "CURRENT"
STAGING = "STAGING"


def _gen_name(number: int) -> str:
    return f"gen-{number:06d}"


class IndexManager:
    """Owns the live and staging generations under `root`. Thread-safe."""

    def __init__(self, settings: IndexSettings, root: Path) -> None:
        self.settings = settings
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        # Writes and searches share the read side; creating, committing and dropping a
        # staging generation take the write side, so no write straddles a swap.
        self._gens = RWLock()
        self._swap = threading.Lock()
        live_name = self._read_pointer(CURRENT)
        if live_name is None or not (root / live_name).is_dir():
            live_name = live_name or _gen_name(1)
            (root / live_name).mkdir(exist_ok=True)
            write_file_atomic(root / CURRENT, live_name.encode())
        self.live: VectorIndex = open_generation(settings, root / live_name)
        self.live_name = live_name
        self.staging: VectorIndex | None = None
        self.staging_name: str | None = None
        staging_name = self._read_pointer(STAGING)
        if staging_name and staging_name != live_name and (root / staging_name).is_dir():
            self.staging = open_generation(settings, root / staging_name)
            self.staging_name = staging_name
        elif staging_name is not None:
            (root / STAGING).unlink(missing_ok=True)
        self._remove_strays()

    def _read_pointer(self, name: str) -> str | None:
        path = self.root / name
        if not path.exists():
            return None
        text = path.read_text().strip()
        return text or None

    def _remove_strays(self) -> None:
        keep = {self.live_name, self.staging_name}
        for path in self.root.glob("gen-*"):
            if path.is_dir() and path.name not in keep:
                logger.info("removing unreferenced generation %s", path.name)
                shutil.rmtree(path, ignore_errors=True)

    def _next_name(self) -> str:
        numbers = [int(p.name[4:]) for p in self.root.glob("gen-*") if p.name[4:].isdigit()]
        return _gen_name(max(numbers, default=0) + 1)

    def start(self) -> None:
        self.live.start()
        if self.staging is not None:
            self.staging.start()

    # -- live ----------------------------------------------------------------------------
    def upsert(self, ids: Ids, vectors: Vectors, model: str) -> int:
        with self._gens.read():
            self.live.upsert(ids, vectors, model)
            staging = self.staging
            if staging is not None and staging.model == model and staging.dim == vectors.shape[1]:
                staging.upsert(ids, vectors, model)
            return self.live.count

    def set_tags(self, ids: Ids, tags: list[list[str]]) -> None:
        """Replace the tags of ids, in the live generation and in staging (a reindex keeps
        the membership the catalog pushed meanwhile)."""
        with self._gens.read():
            self.live.set_tags(ids, tags)
            if self.staging is not None:
                self.staging.set_tags(ids, tags)

    def tags_of(self, ids: Ids) -> list[list[str]]:
        with self._gens.read():
            return self.live.tags_of(ids)

    def tag_counts(self) -> dict[str, int]:
        with self._gens.read():
            return self.live.tag_counts()

    def remove(self, ids: Ids) -> tuple[int, int]:
        with self._gens.read():
            removed = self.live.remove(ids)
            if self.staging is not None:
                self.staging.remove(ids)
            return removed, self.live.count

    def search(self, queries: Vectors, k: int, allowed_ids: Ids | None, model: str | None,
               tags: list[str] | None = None) -> tuple[NDArray[np.float32], Ids]:
        with self._gens.read():
            if model is not None and self.live.count:
                self.live.check(model, int(queries.shape[1]))
            return self.live.search(queries, k, allowed_ids, tags)

    def stats(self) -> dict[str, Any]:
        with self._gens.read():
            out = _stats_dict(self.live.stats())
            out["generation"] = self.live_name
            out["staging"] = None
            if self.staging is not None:
                out["staging"] = dict(_stats_dict(self.staging.stats()),
                                      generation=self.staging_name)
            return out

    def rebuild(self, index_type: str, params: dict[str, Any]) -> None:
        check_type(index_type)
        with self._gens.read():
            self.live.rebuild(index_type, params)

    # -- staging -------------------------------------------------------------------------
    def create_staging(self, model: str, dim: int, index_type: str | None) -> dict[str, Any]:
        """A fresh empty generation pinned to `model` and `dim`, replacing an older one."""
        if index_type is not None:
            check_type(index_type)
        with self._swap, self._gens.write():
            old, old_name = self.staging, self.staging_name
            name = self._next_name()
            gen = open_generation(self.settings, self.root / name, model=model, dim=dim,
                                  index_type=index_type or self.live.stats().type)
            write_file_atomic(self.root / STAGING, name.encode())
            self.staging, self.staging_name = gen, name
            gen.start()
        if old is not None and old_name is not None:
            self._discard(old, old_name)
        return dict(_stats_dict(gen.stats()), generation=name)

    def staging_or_raise(self) -> VectorIndex:
        staging = self.staging
        if staging is None:
            raise StagingNotFound("no staging index: create one with POST /v1/staging")
        return staging

    def upsert_staging(self, ids: Ids, vectors: Vectors, model: str) -> int:
        with self._gens.read():
            staging = self.staging_or_raise()
            staging.upsert(ids, vectors, model)
            return staging.count

    def commit_staging(self) -> dict[str, Any]:
        """Make the staging generation live, durably; the old live one is deleted."""
        with self._swap, self._gens.write():
            staging = self.staging_or_raise()
            assert self.staging_name is not None
            staging.snapshot()
            write_file_atomic(self.root / CURRENT, self.staging_name.encode())
            old, old_name = self.live, self.live_name
            self.live, self.live_name = staging, self.staging_name
            self.staging, self.staging_name = None, None
            (self.root / STAGING).unlink(missing_ok=True)
            fsync_dir(self.root)
        self._discard(old, old_name)
        logger.info("staging committed", extra={"generation": self.live_name,
                                                "count": self.live.count})
        return dict(_stats_dict(self.live.stats()), generation=self.live_name)

    def drop_staging(self) -> None:
        with self._swap, self._gens.write():
            staging = self.staging_or_raise()
            name = self.staging_name
            assert name is not None
            self.staging, self.staging_name = None, None
            (self.root / STAGING).unlink(missing_ok=True)
            fsync_dir(self.root)
        self._discard(staging, name)

    def _discard(self, gen: VectorIndex, name: str) -> None:
        drop = getattr(gen, "drop", None)  # a Milvus collection goes with its generation
        if callable(drop):
            drop()
        gen.close(snapshot=False)
        shutil.rmtree(self.root / name, ignore_errors=True)

    def snapshot(self) -> dict[str, Any]:
        with self._gens.read():
            out = self.live.snapshot()
            if self.staging is not None:
                self.staging.snapshot()
            return out

    def close(self, snapshot: bool = True) -> None:
        with self._gens.write():
            self.live.close(snapshot=snapshot)
            if self.staging is not None:
                self.staging.close(snapshot=snapshot)


def _stats_dict(stats: IndexStats) -> dict[str, Any]:
    return {"count": stats.count, "dim": stats.dim, "model": stats.model, "type": stats.type,
            "tombstones": stats.tombstones, "bytes": stats.bytes,
            "disk_bytes": stats.disk_bytes, "trained": stats.trained,
            "params": stats.params}
