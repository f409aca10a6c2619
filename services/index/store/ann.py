"""The approximate search structure (Faiss HNSW, IVF-SQ8, IVF-PQ) over internal labels.

Labels are assigned in insertion order and map to catalog ids through `label_ids`, so an
upsert of an existing id adds a new label and retires the old one. IVF indexes remove retired
labels at once; HNSW cannot remove, so its retired labels are tombstones, filtered at search
time through an `IDSelectorBitmap` of live labels and dropped by a rebuild (compaction).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import faiss
import numpy as np
from numpy.typing import NDArray

from services.index.store.params import FaissParams
from services.index.store.protocol import Ids, Vectors

logger = logging.getLogger(__name__)

ADD_BLOCK_BYTES = 64 << 20  # float32 rows handed to Faiss per add while building

Progress = Callable[[int, int], None]

# A number per structure built, never reused (unlike `id()`): what a cached filter was
# resolved against.
_SERIALS = itertools.count(1)


class RowSource(Protocol):
    """Rows to build from, read in blocks: the store, a frozen view of it, or arrays."""

    def __len__(self) -> int: ...

    def read(self, start: int, stop: int) -> tuple[Ids, Vectors]:
        """(m,) ids and (m, dim) float32 vectors of rows [start, stop)."""
        ...

    def take(self, rows: NDArray[np.int64]) -> Vectors:
        """(m, dim) float32 vectors of `rows` (the training sample)."""
        ...


class ArrayRows:
    """(n,) ids and (n, dim) vectors already in memory as a `RowSource`."""

    def __init__(self, ids: Ids, vectors: Vectors) -> None:
        self.ids, self.vectors = ids, vectors

    def __len__(self) -> int:
        return len(self.ids)

    def read(self, start: int, stop: int) -> tuple[Ids, Vectors]:
        return self.ids[start:stop], np.asarray(self.vectors[start:stop], np.float32)

    def take(self, rows: NDArray[np.int64]) -> Vectors:
        return np.asarray(self.vectors[rows], np.float32)


def _new_faiss_index(index_type: str, dim: int, params: FaissParams, n_train: int) -> Any:
    metric = faiss.METRIC_INNER_PRODUCT
    index: Any
    if index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params.hnsw_m, metric)
        index.hnsw.efConstruction = params.hnsw_ef_construction
        return index
    nlist = params.nlist_for(n_train)
    quantizer = faiss.IndexFlatIP(dim)
    if index_type == "ivf_sq8":
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist,
                                              faiss.ScalarQuantizer.QT_8bit, metric)
    elif index_type == "ivf_pq":
        if dim % params.pq_m:
            from services.index.store.errors import InvalidIndexType

            raise InvalidIndexType(f"pq_m={params.pq_m} does not divide the dimension {dim}")
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, params.pq_m, params.pq_nbits, metric)
    else:
        raise ValueError(index_type)
    index.referenced_objects = [quantizer]  # the Python quantizer must outlive the index
    return index


class AnnIndex:
    """A trained Faiss index plus the label <-> catalog id maps. Not thread-safe."""

    def __init__(self, index_type: str, dim: int, params: FaissParams, index: Any,
                 label_ids: Ids | None = None) -> None:
        self.index_type = index_type
        self.dim = dim
        self.params = params
        self.index = index
        self.label_ids: Ids = label_ids if label_ids is not None else np.empty(0, np.int64)
        self.next_label = len(self.label_ids)
        live = np.flatnonzero(self.label_ids >= 0)
        self.id_to_label: dict[int, int] = dict(zip(self.label_ids[live].tolist(),
                                                    live.tolist(), strict=True))
        self.tombstones = (self.next_label - len(live)) if index_type == "hnsw" else 0
        self._bitmap: NDArray[np.uint8] | None = None
        # (ids ascending, their labels) of the live labels, for filters: rebuilt after writes.
        self._by_id: tuple[Ids, Ids] | None = None
        # The label of each id, indexed by id (-1: none), while the ids are dense enough
        # (catalog ids count up): a filter's labels are one gather, kept up to date by
        # every write instead of rebuilt after it. None: not built, or ids too sparse.
        self._dense: Ids | None = None
        self.trained_at = int(index.ntotal)
        # Bumped by every add or removal: what was derived from the labels (a filter's
        # bitmap) is stale when it changed.
        self.version = 0
        self.serial = next(_SERIALS)

    @classmethod
    def build(cls, index_type: str, dim: int, params: FaissParams, ids: Ids,
              vectors: Vectors) -> AnnIndex:
        """Train (IVF) on and add all (n, dim) `vectors`; labels 0..n-1."""
        return cls.build_from(index_type, dim, params, ArrayRows(ids, vectors))

    @classmethod
    def build_from(cls, index_type: str, dim: int, params: FaissParams, source: RowSource,
                   progress: Progress | None = None) -> AnnIndex:
        """Build over every row of `source` in bounded memory: IVF trains on a seeded sample
        (`train_sample_size` rows), then rows are added in blocks of about 64 MB.
        `progress(done, total)` after each block; a log line about every 30 s."""
        n = len(source)
        index = _new_faiss_index(index_type, dim, params, n)
        if not index.is_trained:
            size = params.train_sample_size(n, index.nlist)
            rows = np.sort(np.random.default_rng(0).choice(n, size, replace=False)) \
                if size < n else np.arange(n, dtype=np.int64)
            started = time.monotonic()
            index.train(np.ascontiguousarray(source.take(rows), dtype=np.float32))
            logger.info("index trained", extra={"type": index_type, "sample": len(rows),
                                                "nlist": index.nlist,
                                                "seconds": round(time.monotonic() - started, 1)})
        ann = cls(index_type, dim, params, index)
        step = max(1, ADD_BLOCK_BYTES // (4 * dim))
        logged = time.monotonic()
        for start in range(0, n, step):
            ids, x = source.read(start, start + step)
            ann.add(ids, x)
            done = min(start + step, n)
            if progress is not None:
                progress(done, n)
            if time.monotonic() - logged > 30:
                logged = time.monotonic()
                logger.info("index build", extra={"type": index_type, "done": done, "total": n})
        ann.trained_at = n
        return ann

    @property
    def removes(self) -> bool:
        """Whether Faiss can remove from this type (IVF yes, HNSW no)."""
        return self.index_type != "hnsw"

    @property
    def live(self) -> int:
        return len(self.id_to_label)

    @property
    def nbytes(self) -> int:
        n = int(self.index.ntotal)
        per = {"hnsw": 4 * self.dim + 8 * self.params.hnsw_m * 1.05,
               "ivf_sq8": self.dim + 8, "ivf_pq": self.params.pq_m + 8}[self.index_type]
        return int(n * per + self.label_ids.nbytes + 100 * len(self.id_to_label))

    def _grow_labels(self, extra: int) -> None:
        need = self.next_label + extra
        if need > len(self.label_ids):
            grown = np.full(max(need, 2 * len(self.label_ids), 1024), -1, dtype=np.int64)
            grown[: self.next_label] = self.label_ids[: self.next_label]
            self.label_ids = grown

    def _retire(self, labels: list[int]) -> None:
        if not labels:
            return
        arr = np.asarray(labels, dtype=np.int64)
        if self._dense is not None:
            self._dense[self.label_ids[arr]] = -1
        self.label_ids[arr] = -1
        if self.removes:
            self.index.remove_ids(faiss.IDSelectorBatch(arr))
        else:
            self.tombstones += len(arr)
        self._bitmap = None
        self._by_id = None
        self.version += 1

    def add(self, ids: Ids, vectors: Vectors) -> None:
        """(n,) unique ids, (n, dim) vectors; an id already present is replaced."""
        self._retire([self.id_to_label[i] for i in ids.tolist() if i in self.id_to_label])
        self._grow_labels(len(ids))
        labels = np.arange(self.next_label, self.next_label + len(ids), dtype=np.int64)
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.index_type == "hnsw":
            self.index.add(x)  # HNSW labels are its insertion order, the same as ours
        else:
            self.index.add_with_ids(x, labels)
        self.label_ids[labels] = ids
        self.id_to_label.update(zip(ids.tolist(), labels.tolist(), strict=True))
        if self._dense is not None and len(ids):
            top = int(ids.max())
            if top >= len(self._dense):
                self._dense = self._grown_dense(top)
            if self._dense is not None:
                self._dense[ids] = labels
        self.next_label += len(ids)
        self._bitmap = None
        self._by_id = None
        self.version += 1

    def remove(self, ids: Ids) -> None:
        labels = [self.id_to_label.pop(i) for i in ids.tolist() if i in self.id_to_label]
        self._retire(labels)

    def labels_of(self, ids: Ids) -> Ids:
        return np.asarray([self.id_to_label[i] for i in ids.tolist() if i in self.id_to_label],
                          dtype=np.int64)

    def _dense_ok(self, top: int) -> bool:
        return top < 4 * len(self.id_to_label) + 4096

    def _grown_dense(self, top: int) -> Ids | None:
        """The dense map grown to hold id `top` (doubling), or None if ids got too sparse."""
        if self._dense is None or not self._dense_ok(top):
            return None
        grown = np.full(max(top + 1, 2 * len(self._dense)), -1, dtype=np.int64)
        grown[: len(self._dense)] = self._dense
        return grown

    def _dense_labels(self) -> Ids | None:
        """The label of each id, by id, built once (O(n)) when the ids are dense."""
        if self._dense is None:
            live = np.flatnonzero(self.label_ids[: self.next_label] >= 0)
            if not len(live):
                return None
            top = int(self.label_ids[live].max())
            if not self._dense_ok(top):
                return None
            dense = np.full(top + 1, -1, dtype=np.int64)
            dense[self.label_ids[live]] = live
            self._dense = dense
        return self._dense

    def labels_of_sorted(self, ids: Ids) -> Ids:
        """Labels of the live ones among (m,) ascending unique `ids`, without a loop over
        them in Python: a gather from the dense id -> label array (catalog ids are dense),
        else a binary search in the live (id, label) pairs, kept until the next write, or,
        when those pairs are stale and `ids` are a small share of the labels (a tag filter
        while writes go on), the id -> label map looked up in C."""
        dense = self._dense_labels()
        if dense is not None:
            inside = ids[: int(np.searchsorted(ids, len(dense)))]
            labels = dense[inside]
            return labels[labels >= 0]
        if self._by_id is None and 4 * len(ids) < self.next_label:
            labels = np.fromiter(map(self.id_to_label.get, ids.tolist(), itertools.repeat(-1)),
                                 dtype=np.int64, count=len(ids))
            return labels[labels >= 0]
        if self._by_id is None:
            live = np.flatnonzero(self.label_ids[: self.next_label] >= 0)
            order = np.argsort(self.label_ids[live], kind="stable")
            self._by_id = (self.label_ids[live][order], live[order].astype(np.int64))
        sorted_ids, labels = self._by_id
        if not len(sorted_ids):
            return np.empty(0, np.int64)
        pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
        return labels[pos[sorted_ids[pos] == ids]]

    def _live_bitmap(self) -> NDArray[np.uint8]:
        bitmap = self._bitmap
        if bitmap is None:
            bitmap = np.packbits(self.label_ids[: self.next_label] >= 0, bitorder="little")
            self._bitmap = bitmap
        return bitmap

    def bitmap_of(self, labels: Ids) -> NDArray[np.uint8]:
        """A bitmap over the labels with `labels` set (little-endian bits): one bit test
        per code scanned, built in O(n / 8) vectorised (an IDSelectorBatch hashes every id
        first). Valid until the next write (`version`)."""
        mask = np.zeros(self.next_label, dtype=bool)
        mask[labels] = True
        return np.packbits(mask, bitorder="little")

    def search(self, xq: Vectors, k: int, allowed_labels: Ids | None = None,
               allowed_bitmap: NDArray[np.uint8] | None = None) -> Ids:
        """(nq, dim) queries -> (nq, k) catalog ids of candidates (-1 where none), among
        `allowed_labels` (or the labels set in `allowed_bitmap`, from `bitmap_of`)."""
        keep: list[Any] = []
        sel: Any = None
        if allowed_labels is not None and allowed_bitmap is None:
            allowed_bitmap = self.bitmap_of(allowed_labels)
        filtered = allowed_bitmap is not None
        if allowed_bitmap is not None:
            keep.append(allowed_bitmap)
            sel = faiss.IDSelectorBitmap(self.next_label, faiss.swig_ptr(allowed_bitmap))
        elif self.tombstones:
            bitmap = self._live_bitmap()
            keep.append(bitmap)
            sel = faiss.IDSelectorBitmap(self.next_label, faiss.swig_ptr(bitmap))
        if self.index_type == "hnsw":
            params: Any = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            ef = max(self.params.hnsw_ef_search, k)
            if self.tombstones and sel is not None and not filtered:
                # Tombstones take graph slots: widen the beam by the dead share (bounded).
                ef = int(ef * min(self.next_label / max(self.live, 1), 8.0))
            params.efSearch = ef
        else:
            params = faiss.SearchParametersIVF()
            params.nprobe = self.params.nprobe_for(self.index.nlist)
        if sel is not None:
            params.sel = sel
        _, labels = self.index.search(np.ascontiguousarray(xq, dtype=np.float32), k,
                                      params=params)
        out: Ids = np.where(labels >= 0, self.label_ids[np.clip(labels, 0, None)], -1)
        return out

    def write(self, path: Path) -> Ids:
        """Write the Faiss index to `path` (straight to the file, no copy in memory);
        returns the (next_label,) label -> id map to store beside it. Safe while searches
        run, not while writes do (the caller keeps writes away from this object)."""
        faiss.write_index(self.index, str(path))
        return self.label_ids[: self.next_label]

    @classmethod
    def restore(cls, index_type: str, dim: int, params: FaissParams,
                state: dict[str, Any]) -> AnnIndex:
        """From a snapshot: {"path": file of `write`} (or {"index": serialised bytes} of
        older snapshots), "label_ids", "trained_at"."""
        if "path" in state:
            index = faiss.read_index(str(state["path"]))
        else:
            index = faiss.deserialize_index(np.asarray(state["index"], dtype=np.uint8))
        ann = cls(index_type, dim, params, index, np.asarray(state["label_ids"], np.int64))
        ann.trained_at = int(state.get("trained_at", index.ntotal))
        return ann
