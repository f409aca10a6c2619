"""A Faiss index made durable: write-ahead log first, memory second, snapshots now and then.

Writes are validated, appended to the log and applied to memory under one mutex (so memory
and log agree on order), then wait for the fsync outside it (group commit) before returning:
a write that returns is on disk. Start-up loads the newest snapshot and replays the log
records after it. A maintenance thread snapshots every `snapshot_every` records and runs the
backend's compaction (HNSW tombstones, IVF retraining) in the background.

A snapshot holds the write mutex only to note the log position, freeze the backend (O(1))
and rotate the log; the files are written after it is released, while writes go on (they
land in the new log file and in memory). A crash before the snapshot's rename leaves the
previous snapshot and every log file since: nothing is lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.index.store import snapshot as snap
from services.index.store.errors import DimensionMismatch, ModelMismatch
from services.index.store.faiss_backend import FaissIndex
from services.index.store.genmeta import GenerationMeta
from services.index.store.protocol import Ids, IndexStats, Vectors
from services.index.store.wal import (
    WriteAheadLog,
    decode,
    decode_tags,
    encode_remove,
    encode_tags,
    encode_upsert,
)

logger = logging.getLogger(__name__)


class DurableIndex:
    """`VectorIndex` over a `FaissIndex` with its files in `directory`."""

    def __init__(self, directory: Path, backend: FaissIndex, *, snapshot_every: int,
                 meta: GenerationMeta, maintenance_interval_s: float = 1.0) -> None:
        self.directory = directory
        self.backend = backend
        self.snapshot_every = snapshot_every
        self.meta = meta
        self.maintenance_interval_s = maintenance_interval_s
        self._mutex = threading.Lock()
        self._snapshot_lock = threading.Lock()
        # Called with the stage ("rows", "ann") while a snapshot writes its files, outside
        # every lock: tests slow a snapshot down through it.
        self.snapshot_progress: Callable[[str], None] | None = None
        self._since_snapshot = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self._snapshot_seq = self._load()
        self._wal = WriteAheadLog(directory, self._last_seq + 1)

    # -- start-up ------------------------------------------------------------------------
    def _load(self) -> int:
        loaded = snap.load_latest(self.directory)
        seq = 0
        if loaded is not None:
            seq, state = loaded
            self.backend.import_state(state)
        self._last_seq = seq
        replayed = 0
        from services.index.store.wal import read_records

        for rec_seq, payload in read_records(self.directory, after=seq):
            op, ids, vectors, model = decode(payload)
            tagged = decode_tags(payload) if op == "tags" else None
            if tagged is not None:
                self.backend.set_tags(*tagged)
            elif op == "upsert":
                assert vectors is not None and model is not None
                self.backend.upsert(ids, vectors, model)
            else:
                self.backend.remove(ids)
            self._last_seq = rec_seq
            replayed += 1
        self._since_snapshot = replayed
        logger.info("index loaded", extra={"dir": str(self.directory), "snapshot_seq": seq,
                                           "replayed": replayed, "count": self.backend.count})
        return seq

    def start(self) -> None:
        """Start the maintenance thread (snapshots, compaction)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._maintain, name="index-maintenance",
                                            daemon=True)
            self._thread.start()

    def _maintain(self) -> None:
        while not self._stop.wait(self.maintenance_interval_s):
            try:
                if self.backend.needs_compaction():
                    self.backend.rebuild()
                    self.snapshot()
                elif self._since_snapshot >= self.snapshot_every:
                    self.snapshot()
            except Exception:
                logger.exception("index maintenance failed")
                time.sleep(self.maintenance_interval_s)

    # -- protocol ------------------------------------------------------------------------
    @property
    def model(self) -> str | None:
        return self.backend.model or self.meta.model

    @property
    def dim(self) -> int | None:
        return self.backend.dim or self.meta.dim

    @property
    def count(self) -> int:
        return self.backend.count

    def check(self, model: str | None, dim: int) -> None:
        if self.meta.model is not None and model is not None and model != self.meta.model:
            raise ModelMismatch(f"this index takes vectors of model {self.meta.model}, "
                                f"not {model}",
                                detail={"index_model": self.meta.model, "given_model": model})
        if self.meta.dim is not None and dim != self.meta.dim:
            raise DimensionMismatch(f"this index takes {self.meta.dim}-d vectors, not {dim}-d",
                                    detail={"index_dim": self.meta.dim, "given_dim": dim})
        self.backend.check(model, dim)

    def upsert(self, ids: Ids, vectors: Vectors, model: str) -> None:
        if not len(ids):
            return
        with self._mutex:
            self.check(model, int(vectors.shape[1]))
            seq = self._wal.append(encode_upsert(ids, vectors, model))
            self.backend.upsert(ids, vectors, model)
            self._since_snapshot += 1
        self._wal.sync(seq)

    def set_tags(self, ids: Ids, tags: list[list[str]]) -> None:
        """Replace the tags of each id; logged like vectors, so they survive a crash."""
        if not len(ids):
            return
        with self._mutex:
            seq = self._wal.append(encode_tags(ids, tags))
            self.backend.set_tags(ids, tags)
            self._since_snapshot += 1
        self._wal.sync(seq)

    def tags_of(self, ids: Ids) -> list[list[str]]:
        return self.backend.tags_of(ids)

    def tag_counts(self) -> dict[str, int]:
        return self.backend.tags.counts()

    def remove(self, ids: Ids) -> int:
        if not len(ids):
            return 0
        with self._mutex:
            seq = self._wal.append(encode_remove(ids))
            removed = self.backend.remove(ids)
            self._since_snapshot += 1
        self._wal.sync(seq)
        return removed

    def search(self, queries: Vectors, k: int, allowed_ids: Ids | None = None,
               tags: list[str] | None = None) -> tuple[NDArray[np.float32], Ids]:
        if self.dim is not None and queries.shape[1] != self.dim:
            raise DimensionMismatch(f"the index holds {self.dim}-d vectors, "
                                    f"not {queries.shape[1]}-d",
                                    detail={"index_dim": self.dim,
                                            "given_dim": int(queries.shape[1])})
        return self.backend.search(queries, k, allowed_ids, tags)

    def get(self, ids: Ids) -> tuple[Ids, Vectors]:
        return self.backend.get(ids)

    def ids(self, after: int, limit: int) -> Ids:
        return self.backend.ids(after, limit)

    def stats(self) -> IndexStats:
        stats = self.backend.stats()
        stats.model = self.model
        stats.dim = self.dim
        return stats

    def rebuild(self, index_type: str, params: dict[str, Any]) -> None:
        """New type or parameters over the same vectors; recorded, then snapshotted."""
        self.backend.rebuild(index_type, params)
        merged = dict(self.meta.params, **params) if index_type == self.meta.type else params
        self.meta.type, self.meta.params = index_type, merged
        self.meta.save(self.directory)
        self.snapshot()

    def snapshot(self) -> dict[str, Any]:
        """Write a snapshot covering every write so far, then drop the log it covers.

        Writes are held up only while the log position is noted, the backend frozen and the
        log rotated; they go on while the files are written."""
        with self._snapshot_lock, self.backend.maintenance_lock:
            with self._mutex:
                seq = self._wal.last_seq
                covered = self._since_snapshot
                view = self.backend.freeze()
                try:
                    self._wal.rotate()
                except BaseException:
                    self.backend.thaw(view)
                    raise
            try:
                path = snap.write_snapshot(self.directory, seq, view, self.snapshot_progress)
            finally:
                self.backend.thaw(view)
            with self._mutex:
                self._since_snapshot = max(0, self._since_snapshot - covered)
            self._wal.drop_through(seq)
            snap.prune(self.directory, seq)
            self._snapshot_seq = seq
        logger.info("snapshot written", extra={"seq": seq, "count": self.count})
        return {"count": self.count, "path": str(path), "seq": seq}

    def close(self, snapshot: bool = True) -> None:
        """Stop maintenance; snapshot (a clean shutdown) and close the log."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if snapshot:
            self.snapshot()
        self._wal.close()
        self.backend.close()
