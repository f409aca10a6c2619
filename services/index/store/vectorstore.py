"""The vectors themselves, in NumPy: every index type keeps them here, so `get` works for all
types, exact search and re-ranking read them, and rebuilds start from them.

A snapshot reads the rows as they were at one instant while writes go on: `freeze()` is
O(1); from then on the first write to a row of that instant saves the row's old id and
vector first (copy-on-write per row), and `frozen_rows` reads the live arrays patched with
the saved rows. Writes pay one row copy at most; nothing is copied up front.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from services.index.store.protocol import Ids, Vectors


@dataclass
class Frozen:
    """Rows [0, n) as at `VectorStore.freeze()`: the old (id, (dim,) vector) of every row
    written since."""

    n: int
    saved: dict[int, tuple[int, Vectors]] = field(default_factory=dict)


class VectorStore:
    """Rows of a growable (capacity, dim) float32 matrix with their int64 ids.

    Removing a row moves the last row into its place, so rows stay dense; `_row` maps an id
    to its row. Not thread-safe: the owning index holds its lock.
    """

    def __init__(self, dim: int, capacity: int = 1024) -> None:
        self.dim = dim
        self._n = 0
        self._ids: Ids = np.empty(capacity, dtype=np.int64)
        self._vecs: Vectors = np.empty((capacity, dim), dtype=np.float32)
        self._row: dict[int, int] = {}
        self._sorted: Ids | None = None
        self._frozen: Frozen | None = None

    def __len__(self) -> int:
        return self._n

    @property
    def ids(self) -> Ids:
        """(n,) ids of the rows (a view: copy it before releasing the lock)."""
        return self._ids[: self._n]

    @property
    def vectors(self) -> Vectors:
        """(n, dim) vectors of the rows (a view)."""
        return self._vecs[: self._n]

    @property
    def nbytes(self) -> int:
        # A dict entry costs about 100 bytes with its two int objects (measured in the bench).
        return int(self._ids.nbytes + self._vecs.nbytes + 100 * len(self._row))

    def _reserve(self, extra: int) -> None:
        need = self._n + extra
        if need <= len(self._ids):
            return
        cap = max(need, 2 * len(self._ids))
        ids = np.empty(cap, dtype=np.int64)
        ids[: self._n] = self._ids[: self._n]
        vecs = np.empty((cap, self.dim), dtype=np.float32)
        vecs[: self._n] = self._vecs[: self._n]
        self._ids, self._vecs = ids, vecs

    # -- a consistent view for snapshots ---------------------------------------------------
    def freeze(self) -> Frozen:
        """Start preserving the current rows (O(1)); `thaw` ends it. One freeze at a time."""
        if self._frozen is not None:
            raise RuntimeError("the store is already frozen")
        self._frozen = Frozen(self._n)
        return self._frozen

    def thaw(self) -> None:
        self._frozen = None

    def _preserve(self, row: int) -> None:
        """Called before row `row` is overwritten or vacated."""
        frozen = self._frozen
        if frozen is not None and row < frozen.n and row not in frozen.saved:
            frozen.saved[row] = (int(self._ids[row]), self._vecs[row].copy())

    def frozen_rows(self, start: int, stop: int) -> tuple[Ids, Vectors]:
        """Copies of the frozen rows [start, stop): (m,) ids and (m, dim) vectors."""
        frozen = self._frozen
        if frozen is None:
            raise RuntimeError("the store is not frozen")
        stop = min(stop, frozen.n)
        ids = self._ids[start:stop].copy()
        vecs = self._vecs[start:stop].copy()
        for row, (id_, vec) in frozen.saved.items():
            if start <= row < stop:
                ids[row - start] = id_
                vecs[row - start] = vec
        return ids, vecs

    def contains(self, id_: int) -> bool:
        return id_ in self._row

    def upsert(self, ids: Ids, vectors: Vectors) -> Ids:
        """Insert or overwrite; returns the (m,) ids that replaced an existing vector."""
        self._reserve(len(ids))
        replaced = []
        for id_, vec in zip(ids.tolist(), vectors, strict=True):
            row = self._row.get(id_)
            if row is None:
                row = self._n
                self._preserve(row)  # a row vacated since the freeze, now refilled
                self._row[id_] = row
                self._ids[row] = id_
                self._n += 1
            else:
                self._preserve(row)
                replaced.append(id_)
            self._vecs[row] = vec
        self._sorted = None
        return np.asarray(replaced, dtype=np.int64)

    def remove(self, ids: Ids) -> Ids:
        """Remove the ids present; returns the (m,) ids actually removed."""
        removed = []
        for id_ in ids.tolist():
            row = self._row.pop(id_, None)
            if row is None:
                continue
            removed.append(id_)
            last = self._n - 1
            # Both rows change: `row` takes the last row, `last` leaves the live range (and
            # is not copied if the arrays grow later), so a freeze keeps both.
            self._preserve(row)
            self._preserve(last)
            if row != last:
                moved = int(self._ids[last])
                self._ids[row] = moved
                self._vecs[row] = self._vecs[last]
                self._row[moved] = row
            self._n -= 1
        if removed:
            self._sorted = None
        return np.asarray(removed, dtype=np.int64)

    def rows_of(self, ids: Ids) -> tuple[Ids, NDArray[np.int64]]:
        """(found ids in the order given, their rows); absent ids are left out."""
        found, rows = [], []
        for id_ in ids.tolist():
            row = self._row.get(id_)
            if row is not None:
                found.append(id_)
                rows.append(row)
        return np.asarray(found, dtype=np.int64), np.asarray(rows, dtype=np.int64)

    def sorted_ids(self) -> Ids:
        if self._sorted is None:
            self._sorted = np.sort(self.ids)
        return self._sorted

    def ids_after(self, after: int, limit: int) -> Ids:
        ordered = self.sorted_ids()
        start = int(np.searchsorted(ordered, after, side="right"))
        return ordered[start : start + limit].copy()
