"""The Faiss backend: vectors in a NumPy store, an approximate structure beside them.

`flat` searches the store exactly. `hnsw`, `ivf_sq8` and `ivf_pq` answer from Faiss, then
re-score `rerank_factor * k` candidates exactly from the store (exact scores, better recall).
IVF types search exactly until `train_size` vectors exist, then train once. Rebuilds
(a new type, compaction of HNSW tombstones, IVF retraining) run off the lock on a copy and
replay the writes that arrived meanwhile before swapping in (the copy, too, is taken off
the lock from a frozen view of the store).

Snapshots (`freeze` ... `thaw`) never hold the lock while files are written: the store
preserves the rows of the freeze instant (copy-on-write per row), and the Faiss structure is
left untouched while its file is written: writes meanwhile go to the store at once and are
queued for Faiss (searches add the ids upserted meanwhile to the candidates, re-scored
exactly); `thaw` applies the queue in short slices.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.index.store.ann import AnnIndex, Progress
from services.index.store.errors import DimensionMismatch, InvalidIndexType, ModelMismatch
from services.index.store.filters import (
    Filter,
    empty_result,
    exact_over_store,
    fill_short,
    rerank,
    search_filtered,
)
from services.index.store.frozen import FrozenState, block_rows
from services.index.store.params import FaissParams, check_type
from services.index.store.protocol import Ids, IndexStats, Vectors
from services.index.store.rwlock import RWLock
from services.index.store.tagsets import TagSets
from services.index.store.vectorstore import (
    DEFAULT_MAP_BUDGET,
    StoreDtype,
    StoreReads,
    VectorStore,
)

logger = logging.getLogger(__name__)

_Op = tuple[str, Ids, Vectors | None]

# Parameters read only at search time: changed by `tune` with no rebuild.
SEARCH_PARAMS = ("ivf_nprobe", "hnsw_ef_search", "rerank_factor", "pq_rerank_factor",
                 "rerank_max", "filter_exact_max")

# Queued writes are applied to Faiss for about this long per hold of the write lock (at least
# one write: never longer than that write took to arrive the normal way).
_THAW_SLICE_S = 0.01


_Version = tuple[int, int, int]  # (tags, structure serial, structure version)


@dataclass
class _CachedFilter:
    """A tag combination's resolved filter, the state it is valid for, and the ids written
    since it was last brought up to date with their labels then (patched at its next use)."""

    version: _Version
    filter: Filter
    pending: dict[int, int] = field(default_factory=dict)

    def pending_max(self) -> int:
        """Past this many written ids, resolving afresh costs less than patching."""
        return max(1024, min(65536, len(self.filter.allowed) // 4))

    def current(self, ann: AnnIndex | None, tags: TagSets, key: tuple[str, ...]) -> Filter:
        """The filter with the pending writes patched in (the caller holds the mutex)."""
        if self.pending:
            ids = np.fromiter(sorted(self.pending), np.int64, len(self.pending))
            old = np.fromiter(map(self.pending.__getitem__, ids.tolist()), np.int64, len(ids))
            want = set(key)
            member = np.fromiter((want.issubset(t) for t in tags.tags_of(ids.tolist())), bool,
                                 len(ids))
            self.filter = self.filter.patched(ann, ids, old, member)
            self.pending = {}
        return self.filter


def dedupe_last(ids: Ids, vectors: Vectors) -> tuple[Ids, Vectors]:
    """Keep the last occurrence of each id (a batch upserting one id twice: last wins)."""
    if len(np.unique(ids)) == len(ids):
        return ids, vectors
    _, first_in_reversed = np.unique(ids[::-1], return_index=True)
    keep = np.sort(len(ids) - 1 - first_in_reversed)
    return ids[keep], vectors[keep]


class StoreRows:
    """The live rows of a store as a `RowSource` (the caller holds the index's lock)."""

    def __init__(self, store: VectorStore) -> None:
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def read(self, start: int, stop: int) -> tuple[Ids, Vectors]:
        return self.store.ids[start:stop].copy(), self.store.read(start, stop)

    def take(self, rows: NDArray[np.int64]) -> Vectors:
        return self.store.take(rows)


class FrozenRows:
    """The first `n` rows of a frozen store as a `RowSource`, each block read under the
    index's read lock (writes go on between blocks)."""

    def __init__(self, store: VectorStore, n: int, lock: RWLock) -> None:
        self.store, self.n, self.lock = store, n, lock

    def __len__(self) -> int:
        return self.n

    def read(self, start: int, stop: int) -> tuple[Ids, Vectors]:
        with self.lock.read():
            ids, vecs = self.store.frozen_rows(start, min(stop, self.n))
        return ids, np.asarray(vecs, np.float32)

    def take(self, rows: NDArray[np.int64]) -> Vectors:
        with self.lock.read():
            return self.store.frozen_take(rows)


class FaissIndex:
    """A thread-safe `VectorIndex` over Faiss. See the module docstring."""

    def __init__(self, index_type: str = "flat", params: FaissParams | None = None, *,
                 store_dir: Path | None = None, store_dtype: StoreDtype = "float16",
                 store_reads: StoreReads = "mmap", store_map_budget: int = DEFAULT_MAP_BUDGET
                 ) -> None:
        """`store_dir`: keep the vectors in a file there (`store_dtype` rows), not in RAM;
        re-ranking gathers rows from it through a mapping or by reads (`store_reads`)."""
        self._type = check_type(index_type)
        self._params = params or FaissParams()
        self._store_dir = store_dir
        self._store_dtype: StoreDtype = store_dtype
        self._store_reads: StoreReads = store_reads
        self._store_map_budget = store_map_budget
        # Called with (done, total) while a rebuild adds rows (the bench shows a bar).
        self.build_progress: Progress | None = None
        self._model: str | None = None
        self._store: VectorStore | None = None
        self._ann: AnnIndex | None = None
        self._lock = RWLock()
        self._rebuild_mutex = threading.Lock()
        self._pending: list[_Op] | None = None
        # While a snapshot writes `_frozen_ann`, its writes wait in `_deferred`; `_delta`
        # holds the ids upserted meanwhile (searched exactly beside the frozen structure).
        self._frozen_ann: AnnIndex | None = None
        self._deferred: list[_Op] = []
        self._delta: dict[int, None] = {}
        # Tag membership of catalog ids (filtered search names tags, not ids); kept apart
        # from the vectors: an id may carry tags before its vector arrives.
        self._tags = TagSets()
        # The resolved filter of each tag combination searched lately, with the versions
        # of the tags and of the structure it is valid for.
        self._filters: dict[tuple[str, ...], _CachedFilter] = {}
        self._filters_mutex = threading.Lock()  # searches share the read lock

    # -- introspection -------------------------------------------------------------------
    @property
    def model(self) -> str | None:
        return self._model

    @property
    def dim(self) -> int | None:
        return self._store.dim if self._store is not None else None

    @property
    def count(self) -> int:
        return len(self._store) if self._store is not None else 0

    @property
    def index_type(self) -> str:
        return self._type

    @property
    def params(self) -> FaissParams:
        return self._params

    @property
    def maintenance_lock(self) -> threading.Lock:
        """Held by rebuilds and by a snapshot from freeze to thaw: one at a time."""
        return self._rebuild_mutex

    def _new_store(self, dim: int, capacity: int = 1024) -> VectorStore:
        # The store replaced (if any) is not closed here: a rebuild may still be reading
        # it; its file goes when the last reference does.
        return VectorStore(dim, capacity, directory=self._store_dir, dtype=self._store_dtype,
                           reads=self._store_reads, map_budget=self._store_map_budget)

    def stats(self) -> IndexStats:
        with self._lock.read():
            ann = self._ann
            nbytes = (self._store.nbytes if self._store is not None else 0) + (
                ann.nbytes if ann is not None else 0) + self._tags.nbytes
            return IndexStats(
                count=self.count, dim=self.dim, model=self._model, type=self._type,
                tombstones=ann.tombstones if ann is not None else 0, bytes=nbytes,
                disk_bytes=self._store.disk_bytes if self._store is not None else 0,
                trained=self._type == "flat" or ann is not None,
                params=dict(self._params.as_dict(), in_effect=self._params.in_effect(
                    self._type, ann.live, ann.index.nlist)) if ann is not None
                and self._type != "hnsw" else self._params.as_dict(),
            )

    def check(self, model: str | None, dim: int) -> None:
        """Refuse vectors of another model or dimension (an empty index adopts any)."""
        if self.count == 0:
            return
        if model is not None and self._model is not None and model != self._model:
            raise ModelMismatch(
                f"the index holds vectors of model {self._model}, not {model}",
                detail={"index_model": self._model, "given_model": model})
        if dim != self.dim:
            raise DimensionMismatch(
                f"the index holds {self.dim}-d vectors, not {dim}-d",
                detail={"index_dim": self.dim, "given_dim": dim})

    # -- writes --------------------------------------------------------------------------
    def upsert(self, ids: Ids, vectors: Vectors, model: str) -> None:
        if not len(ids):
            return
        ids, vectors = dedupe_last(np.asarray(ids, np.int64),
                                   np.asarray(vectors, np.float32))
        with self._lock.write(), self._filters_follow(ids):
            self.check(model, vectors.shape[1])
            if self.count == 0 and (self._store is None or self._store.dim != vectors.shape[1]
                                    or self._model != model):
                self._store = self._new_store(vectors.shape[1])
                self._ann = None
            self._model = model
            assert self._store is not None
            self._store.upsert(ids, vectors)
            if self._ann is not None and self._ann is self._frozen_ann:
                self._deferred.append(("upsert", ids, vectors))
                self._delta.update(dict.fromkeys(ids.tolist()))
            elif self._ann is not None:
                self._ann.add(ids, vectors)
            elif self._type != "flat" and self.count >= self._params.train_size(self._type):
                self._ann = AnnIndex.build_from(self._type, self._store.dim, self._params,
                                                StoreRows(self._store))
                logger.info("trained %s index", self._type, extra={"count": self.count})
            if self._pending is not None:
                self._pending.append(("upsert", ids, vectors))

    def set_tags(self, ids: Ids, tags: list[list[str]]) -> None:
        """Replace the tags of each id (tags[i] for ids[i])."""
        ids = np.asarray(ids, np.int64)
        with self._lock.write(), self._filters_follow(ids):
            self._tags.set(ids.tolist(), tags)

    def tags_of(self, ids: Ids) -> list[list[str]]:
        return self._tags.tags_of(np.asarray(ids, np.int64).tolist())

    @property
    def tags(self) -> TagSets:
        return self._tags

    def remove(self, ids: Ids) -> int:
        """Remove the vectors of `ids` and their tags (their images are gone)."""
        ids = np.unique(np.asarray(ids, np.int64))
        with self._lock.write(), self._filters_follow(ids):
            if len(ids):
                self._tags.drop(ids.tolist())
            if self._store is None or not len(ids):
                return 0
            removed = self._store.remove(ids)
            if self._ann is not None and self._ann is self._frozen_ann:
                self._deferred.append(("remove", removed, None))
            elif self._ann is not None:
                self._ann.remove(removed)
            if self._pending is not None:
                self._pending.append(("remove", removed, None))
            return len(removed)

    # -- reads ---------------------------------------------------------------------------
    def search(self, queries: Vectors, k: int, allowed_ids: Ids | None = None,
               tags: list[str] | None = None) -> tuple[NDArray[np.float32], Ids]:
        """`tags`: only ids carrying every one of them (with `allowed_ids`: both)."""
        xq = np.ascontiguousarray(queries, dtype=np.float32)
        with self._lock.read():
            store = self._store
            if store is None or not len(store) or not len(xq):
                return empty_result(len(xq), k)
            if xq.shape[1] != store.dim:
                raise DimensionMismatch(
                    f"the index holds {store.dim}-d vectors, not {xq.shape[1]}-d",
                    detail={"index_dim": store.dim, "given_dim": int(xq.shape[1])})
            delta = self._delta_ids()
            if tags:
                flt = self._tag_filter(tags)
                if allowed_ids is not None:
                    flt = Filter.of(self._ann, np.intersect1d(
                        flt.allowed, np.asarray(allowed_ids, np.int64)), is_sorted=True)
                return search_filtered(store, self._ann, xq, k, flt, self._params, delta)
            if allowed_ids is not None:
                return search_filtered(store, self._ann, xq, k,
                                       np.asarray(allowed_ids, np.int64), self._params, delta)
            # Small galleries (or what tombstones left of one) are cheaper to brute-force.
            if self._ann is None or len(store) <= self._params.filter_exact_max:
                return exact_over_store(store, xq, k, self._params.exact_engine)
            candidates = self._ann.search(
                xq, self._params.candidates(self._type, k, self._ann.live))
            if delta is not None:
                candidates = np.hstack([candidates,
                                        np.broadcast_to(delta, (len(xq), len(delta)))])
            D, I = rerank(store, xq, candidates, k)
            fill_short(store, xq, k, D, I, None, self._params)
            return D, I

    def _filter_version(self) -> _Version:
        ann = self._ann
        return (self._tags.version, ann.serial if ann is not None else 0,
                ann.version if ann is not None else 0)

    @contextmanager
    def _filters_follow(self, ids: Ids) -> Iterator[None]:
        """Around a write touching `ids` (the caller holds the write lock): each cached tag
        filter valid before it notes the ids and their labels then, and stays valid, to be
        patched at its next use. A write that replaces the structure (training, a rebuild)
        leaves the filters stale: they are resolved afresh."""
        before = self._filter_version()
        with self._filters_mutex:
            follow = [c for c in self._filters.values() if c.version == before]
        keep = [c for c in follow if len(c.pending) + len(ids) <= c.pending_max()]
        old: dict[int, int] = {}
        if keep:
            ann = self._ann
            id_list = ids.tolist()
            old = dict(zip(id_list, map(ann.id_to_label.get, id_list, itertools.repeat(-1)),
                           strict=True)) if ann is not None else dict.fromkeys(id_list, -1)
        yield
        after = self._filter_version()
        if after == before or after[1] != before[1]:
            return
        with self._filters_mutex:
            for cached in keep:
                for id_, label in old.items():
                    cached.pending.setdefault(id_, label)
                cached.version = after

    def _tag_filter(self, tags: list[str]) -> Filter:
        """The ids carrying every one of `tags`, resolved to labels: cached, patched after
        writes to a few ids, resolved afresh after a structural change (the caller holds
        the read lock)."""
        key = tuple(sorted(set(tags)))
        ann = self._ann
        version = self._filter_version()
        with self._filters_mutex:
            cached = self._filters.get(key)
            if cached is not None and cached.version == version:
                return cached.current(ann, self._tags, key)
        flt = Filter.of(ann, self._tags.matching(key), is_sorted=True)
        with self._filters_mutex:
            if len(self._filters) >= 64:  # a few tag combinations are searched at a time
                self._filters.pop(next(iter(self._filters)))
            self._filters[key] = _CachedFilter(version, flt)
        return flt

    def _delta_ids(self) -> Ids | None:
        """(m,) ids upserted while the approximate structure is frozen, else None."""
        if self._ann is None or self._ann is not self._frozen_ann or not self._delta:
            return None
        return np.fromiter(self._delta, dtype=np.int64, count=len(self._delta))

    def get(self, ids: Ids) -> tuple[Ids, Vectors]:
        with self._lock.read():
            if self._store is None:
                return np.empty(0, np.int64), np.empty((0, 0), np.float32)
            found, rows = self._store.rows_of(np.asarray(ids, np.int64))
            return found, self._store.take(rows)

    def ids(self, after: int, limit: int) -> Ids:
        with self._lock.read():
            if self._store is None:
                return np.empty(0, np.int64)
            return self._store.ids_after(after, limit)

    def tune(self, overrides: dict[str, Any]) -> None:
        """Change search-time parameters (`SEARCH_PARAMS`) without a rebuild."""
        bad = sorted(set(overrides) - set(SEARCH_PARAMS))
        if bad:
            raise InvalidIndexType(f"not a search-time parameter: {', '.join(bad)}",
                                   detail={"allowed": list(SEARCH_PARAMS)})
        with self._lock.write():
            self._params = self._params.replace(overrides)
            if self._ann is not None:
                self._ann.params = self._ann.params.replace(overrides)

    # -- rebuilds ------------------------------------------------------------------------
    def set_store_map_budget(self, nbytes: int) -> None:
        """Bytes of the disk store's pages re-ranking may keep mapped (`vector_map_mb`);
        the pages mapped now are dropped."""
        with self._lock.write():
            self._store_map_budget = nbytes
            if self._store is not None:
                self._store.set_map_budget(nbytes)

    def needs_compaction(self) -> bool:
        """Too many tombstones, or an auto-sized IVF that the gallery has outgrown."""
        ann = self._ann
        if ann is None:
            return False
        if ann.tombstones > self._params.compact_fraction * max(ann.index.ntotal, 1):
            return True
        return (ann.index_type != "hnsw" and not self._params.ivf_nlist
                and self.count >= self._params.retrain_growth * max(ann.trained_at, 1))

    def rebuild(self, index_type: str | None = None, params: dict[str, Any] | None = None
                ) -> None:
        """Rebuild the search structure (optionally as another type or with new params)."""
        new_type = check_type(index_type or self._type)
        new_params = self._params.replace(params or {})
        with self._rebuild_mutex:
            with self._lock.write():
                store = self._store
                if store is None:
                    self._type, self._params = new_type, new_params
                    return
                n = store.freeze().n
                model, dim = self._model, store.dim
                self._pending = []
            try:
                # Build outside the write lock (minutes at 10M) from the rows frozen above,
                # block by block; writes meanwhile land in `_pending` (and the store keeps
                # the frozen rows they overwrite).
                ann = None
                if new_type != "flat" and n >= new_params.train_size(new_type):
                    ann = AnnIndex.build_from(new_type, dim, new_params,
                                              FrozenRows(store, n, self._lock),
                                              self.build_progress)
            except BaseException:
                with self._lock.write():
                    store.thaw()
                    self._pending = None
                raise
            with self._lock.write():
                store.thaw()
                pending, self._pending = self._pending or [], None
                if self._model != model or self._store is not store:
                    logger.info("index reset during rebuild; rebuild dropped")
                    return
                if ann is not None:
                    for op, op_ids, op_vecs in pending:
                        if op == "upsert":
                            assert op_vecs is not None
                            ann.add(op_ids, op_vecs)
                        else:
                            ann.remove(op_ids)
                    ann.trained_at = n
                elif new_type != "flat" and self.count >= new_params.train_size(new_type):
                    ann = AnnIndex.build_from(new_type, dim, new_params, StoreRows(store))
                self._type, self._params, self._ann = new_type, new_params, ann
        logger.info("rebuilt index", extra={"type": new_type, "count": self.count})

    # -- persistence ---------------------------------------------------------------------
    def freeze(self) -> FrozenState:
        """A consistent view for a snapshot, in O(1) (the caller holds `maintenance_lock`
        and keeps writes out for the call); writes go on until `thaw(view)`."""
        with self._lock.write():
            store = self._store
            meta = {"model": self._model, "dim": self.dim, "type": self._type,
                    "params": self._params.as_dict()}
            rows = store.freeze().n if store is not None else 0
            self._frozen_ann, self._deferred, self._delta = self._ann, [], {}
            tags = self._tags.freeze()

        def read_rows(start: int, stop: int) -> tuple[Ids, Vectors]:
            assert store is not None
            with self._lock.read():  # writers hold the write side: no row changes under us
                return store.frozen_rows(start, stop)

        return FrozenState(meta=meta, rows=rows, dim=store.dim if store is not None else None,
                           read_rows=read_rows, ann=self._frozen_ann, store=store,
                           dtype=store.dtype.str if store is not None else "<f4", tags=tags)

    def thaw(self, view: FrozenState) -> None:
        """End a snapshot: stop preserving rows, apply the queued writes to Faiss."""
        with self._lock.write():
            if view.store is not None:
                view.store.thaw()
        while True:
            with self._lock.write():
                if self._ann is None or self._ann is not self._frozen_ann or not self._deferred:
                    # Done, or the structure was replaced meanwhile (the index emptied and
                    # refilled): the queue belonged to the old one.
                    self._frozen_ann, self._deferred, self._delta = None, [], {}
                    return
                until = time.monotonic() + _THAW_SLICE_S
                applied = 0
                for op, op_ids, op_vecs in self._deferred:
                    if op == "upsert":
                        assert op_vecs is not None
                        self._ann.add(op_ids, op_vecs)
                    else:
                        self._ann.remove(op_ids)
                    applied += 1
                    if time.monotonic() >= until:
                        break
                del self._deferred[:applied]
            time.sleep(0)  # let waiting searches and writes in between slices

    def import_state(self, state: dict[str, Any]) -> None:
        """Replace the contents with a snapshot's (start-up, before serving): the rows are
        copied in blocks, never the whole matrix in memory at once."""
        meta = state["meta"]
        with self._lock.write():
            self._model = meta.get("model")
            self._ann = None
            self._tags = TagSets.from_arrays(*state["tags"]) if "tags" in state else TagSets()
            with self._filters_mutex:
                self._filters.clear()  # resolved against the tag sets replaced
            dim = meta.get("dim")
            if dim is None or "ids" not in state:
                self._store = None
                return
            ids = np.asarray(state["ids"], np.int64)
            store = self._new_store(int(dim), capacity=max(1024, len(ids)))
            self._store = store
            step = block_rows(int(dim))
            for start, vecs in state["vector_blocks"](step):
                store.upsert(ids[start : start + len(vecs)], vecs)
            if "ann" in state and meta.get("type") == self._type:
                self._ann = AnnIndex.restore(self._type, int(dim), self._params, state["ann"])
            elif self._type != "flat" and len(store) >= self._params.train_size(self._type):
                self._ann = AnnIndex.build_from(self._type, int(dim), self._params,
                                                StoreRows(store), self.build_progress)

    def close(self) -> None:
        with self._lock.write():
            self._ann = None
            if self._store is not None:
                self._store.close()
            self._store = None
