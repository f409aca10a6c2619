"""The vectors themselves: every index type keeps them here, so `get` works for all types,
exact search and re-ranking read them, and rebuilds start from them.

Two homes for the matrix. `memory`: a growable float32 NumPy matrix. `disk`: a file of
float16 (or float32) rows beside the index, read and written with `pread`/`pwrite`, so the
compressed index types keep only their codes in RAM: a re-ranking reads its few hundred
candidate rows from the file (the operating system's page cache holds the hot ones, and
gives them back under pressure), and a snapshot or rebuild streams it in blocks. Pages of a
memory mapping would stay mapped into the process once touched, so that after a snapshot had
read the file once the process would count all of it as resident; reads through the file
descriptor do not. The file is unlinked as soon as it is created: it is working storage,
not the durable copy (that is the snapshot and the log), and a crash leaves nothing behind.

Re-ranking gathers its few hundred candidate rows from a read-only shared mapping of the
file (`reads="mmap"`, the default): one vectorised gather, no system call per row (the
`pread` loop cost about 5 us per row from Python, 3-4 ms for the 640 candidates of k=10 at
64 per result). Only those reads go through the mapping, advised MADV_RANDOM so a fault
reads no neighbours: snapshots and rebuilds stream the file with reads, so the pages a
process counts as resident are the rows re-ranking touched (page cache either way, given
back under pressure). Those pages would still add up in the process's resident size (every
row ever re-ranked, up to the whole file; a fault maps the row's whole page-cache folio, up
to 2 MB, not one page), so once the 2 MB regions the gathers touched since the last drop
(each counted once) add up to `map_budget` bytes, the mapping's pages are dropped from the
process (MADV_DONTNEED: they stay in the page cache, the next touch maps them again without
a read; a gather of 1280 rows then costs about 4 ms more at 10M rows; a file within the
budget, 1M rows of 768-d float16, is never dropped): the file's share of the resident size
stays within the budget (or one gather, if larger). `reads="pread"` keeps the plain
path, the oracle of the tests.

A snapshot reads the rows as they were at one instant while writes go on: `freeze()` is
O(1); from then on the first write to a row of that instant saves the row's old id and
vector first (copy-on-write per row), and `frozen_rows` reads the live rows patched with the
saved ones. Writes pay one row copy at most; nothing is copied up front.
"""

from __future__ import annotations

import itertools
import mmap
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from services.index.store.protocol import Ids, Vectors

StoreDtype = Literal["float16", "float32"]
StoreReads = Literal["mmap", "pread"]
# Bytes of the disk store's pages re-ranking may keep mapped into the process (see above).
DEFAULT_MAP_BUDGET = 2 << 30
REGION = 2 << 20  # the most one page fault of a file mapping maps (a PMD-sized folio)


@dataclass
class Frozen:
    """Rows [0, n) as at `VectorStore.freeze()`: the old (id, (dim,) vector) of every row
    written since."""

    n: int
    saved: dict[int, tuple[int, NDArray[Any]]] = field(default_factory=dict)


class _RowFile:
    """(capacity, dim) rows of `dtype` in an unlinked file; whole rows read and written
    through the descriptor."""

    def __init__(self, directory: Path, dim: int, dtype: StoreDtype, capacity: int,
                 reads: StoreReads = "mmap", map_budget: int = DEFAULT_MAP_BUDGET) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.reads = reads
        self.map_budget = map_budget
        self._mapped: NDArray[Any] | None = None
        self._view: mmap.mmap | None = None
        # The 2 MB regions of the mapping gathers touched since the last drop (what may be
        # mapped into the process now), and how many.
        self._regions = np.zeros(0, dtype=bool)
        self._mapped_regions = 0
        self.dim = dim
        self.dtype = np.dtype(dtype)
        self.row_bytes = dim * self.dtype.itemsize
        self._file = tempfile.TemporaryFile(dir=directory, prefix="vectors-")  # noqa: SIM115
        self.fd = self._file.fileno()
        self.capacity = 0
        self.reserve(capacity)

    def reserve(self, capacity: int) -> None:
        """Grow the file (sparse: no copy, O(1))."""
        if capacity > self.capacity:
            os.ftruncate(self.fd, capacity * self.row_bytes)
            self.capacity = capacity

    def write(self, row: int, block: NDArray[Any]) -> None:
        """Rows [row, row + len(block))."""
        data = np.ascontiguousarray(block, dtype=self.dtype)
        view = data.data.cast("B")
        offset = row * self.row_bytes
        while len(view):
            done = os.pwrite(self.fd, view, offset)
            view, offset = view[done:], offset + done

    def read(self, start: int, stop: int) -> NDArray[Any]:
        """(stop - start, dim) rows in the file's dtype."""
        out = np.empty((max(stop - start, 0), self.dim), dtype=self.dtype)
        view = out.data.cast("B")
        offset = start * self.row_bytes
        while len(view):
            done = os.preadv(self.fd, [view], offset)
            if done <= 0:
                raise OSError(f"short read from the vector file at byte {offset}")
            view, offset = view[done:], offset + done
        return out

    def _mapping(self) -> NDArray[Any]:
        """The file as a read-only (capacity, dim) array, mapped again after it grew (a
        view of the old mapping still held by a reader keeps that one alive)."""
        mapped = self._mapped
        if mapped is None or len(mapped) != self.capacity:
            view = mmap.mmap(self.fd, self.capacity * self.row_bytes, prot=mmap.PROT_READ)
            view.madvise(mmap.MADV_RANDOM)
            mapped = np.frombuffer(view, dtype=self.dtype).reshape(self.capacity, self.dim)
            self._mapped, self._view = mapped, view
            self._regions = np.zeros(-(-self.capacity * self.row_bytes // REGION), dtype=bool)
            self._mapped_regions = 0
        return mapped

    def take(self, rows: NDArray[np.int64]) -> NDArray[Any]:
        """(m, dim) rows in the order given."""
        if self.reads == "mmap" and len(rows) and self.capacity:
            mapped = self._mapping()
            # Bytes this gather may map: a fault maps the whole page-cache folio of the
            # row (up to 2 MB) or, for small folios, its neighbours (fault-around), never
            # past the 2 MB-aligned region holding it; MADV_RANDOM changes neither.
            # Regions touched since the last drop count once: a gallery whose rows fit the
            # budget is never dropped, however many queries re-read them.
            start = rows * self.row_bytes
            regions = np.unique(np.concatenate([start // REGION,
                                                (start + self.row_bytes - 1) // REGION]))
            seen = self._regions
            fresh = regions[~seen[regions]]
            if (self.map_budget < self.capacity * self.row_bytes
                    and (self._mapped_regions + len(fresh)) * REGION > self.map_budget):
                self.unmap_pages()
                fresh = regions
            seen[fresh] = True
            self._mapped_regions += len(fresh)
            return mapped[rows]
        return self.take_pread(rows)

    def unmap_pages(self) -> None:
        """Drop the mapping's pages from the process (they stay in the page cache; gathers
        running meanwhile fault them back in)."""
        view = self._view
        if view is not None:
            view.madvise(mmap.MADV_DONTNEED)
        self._regions[:] = False
        self._mapped_regions = 0

    def take_pread(self, rows: NDArray[np.int64]) -> NDArray[Any]:
        """`take` by reads through the descriptor (adjacent rows read together): the plain
        version, and what a store with `reads="pread"` uses."""
        out = np.empty((len(rows), self.dim), dtype=self.dtype)
        if not len(rows):
            return out
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        # Runs of consecutive rows: one read each.
        breaks = np.flatnonzero(np.diff(sorted_rows) != 1) + 1
        starts = np.concatenate([[0], breaks])
        stops = np.concatenate([breaks, [len(rows)]])
        for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
            first = int(sorted_rows[a])
            out[order[a:b]] = self.read(first, first + (b - a))
        return out

    def close(self) -> None:
        self._mapped, self._view = None, None
        self._file.close()


class VectorStore:
    """Rows of (id, vector), int64 ids in RAM, the vectors in RAM (float32) or in a file
    (`directory` given: `dtype` rows, float16 by default).

    Removing a row moves the last row into its place, so rows stay dense; `_row` maps an id
    to its row. Not thread-safe: the owning index holds its lock.
    """

    def __init__(self, dim: int, capacity: int = 1024, *, directory: Path | None = None,
                 dtype: StoreDtype = "float16", reads: StoreReads = "mmap",
                 map_budget: int = DEFAULT_MAP_BUDGET) -> None:
        self.dim = dim
        self._n = 0
        self._ids: Ids = np.empty(capacity, dtype=np.int64)
        self._file = _RowFile(directory, dim, dtype, capacity, reads, map_budget) \
            if directory else None
        self._vecs: Vectors = np.empty((0 if self._file else capacity, dim), dtype=np.float32)
        self._row: dict[int, int] = {}
        self._sorted: Ids | None = None
        self._frozen: Frozen | None = None

    def __len__(self) -> int:
        return self._n

    @property
    def on_disk(self) -> bool:
        return self._file is not None

    def set_map_budget(self, nbytes: int) -> None:
        """A new `map_budget` for the disk store's mapping (its pages mapped now dropped)."""
        if self._file is not None:
            self._file.map_budget = nbytes
            self._file.unmap_pages()

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype rows are kept in (what `frozen_rows` returns and snapshots write)."""
        return self._file.dtype if self._file is not None else np.dtype(np.float32)

    @property
    def ids(self) -> Ids:
        """(n,) ids of the rows (a view: copy it before releasing the lock)."""
        return self._ids[: self._n]

    @property
    def vectors(self) -> Vectors:
        """(n, dim) float32 vectors of the rows: a view of the RAM matrix (memory store)."""
        if self._file is not None:
            raise RuntimeError("the vectors are on disk: read them with read() or take()")
        return self._vecs[: self._n]

    def read(self, start: int, stop: int) -> Vectors:
        """(m, dim) float32 vectors of rows [start, stop) (a copy)."""
        stop = min(stop, self._n)
        if self._file is None:
            return self._vecs[start:stop].copy()
        return self._file.read(start, stop).astype(np.float32)

    def take(self, rows: NDArray[np.int64]) -> Vectors:
        """(m, dim) float32 vectors of `rows`, in that order (a copy)."""
        if self._file is None:
            return self._vecs[rows]
        return self._file.take(np.asarray(rows, np.int64)).astype(np.float32)

    @property
    def nbytes(self) -> int:
        """Bytes in RAM (a dict entry costs about 100 bytes with its two int objects, as
        measured in the bench); the file is not counted (see `disk_bytes`)."""
        return int(self._ids.nbytes + self._vecs.nbytes + 100 * len(self._row))

    @property
    def disk_bytes(self) -> int:
        return self._file.capacity * self._file.row_bytes if self._file is not None else 0

    def _reserve(self, extra: int) -> None:
        need = self._n + extra
        if need <= len(self._ids):
            return
        cap = max(need, 2 * len(self._ids))
        ids = np.empty(cap, dtype=np.int64)
        ids[: self._n] = self._ids[: self._n]
        self._ids = ids
        if self._file is not None:
            self._file.reserve(cap)
            return
        vecs = np.empty((cap, self.dim), dtype=np.float32)
        vecs[: self._n] = self._vecs[: self._n]
        self._vecs = vecs

    def _row_vector(self, row: int) -> NDArray[Any]:
        if self._file is not None:
            return self._file.read(row, row + 1)[0]
        return self._vecs[row].copy()

    def _put(self, row: int, block: NDArray[Any]) -> None:
        """Write rows [row, row + len(block))."""
        if self._file is not None:
            self._file.write(row, block)
        else:
            self._vecs[row : row + len(block)] = block

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
            frozen.saved[row] = (int(self._ids[row]), self._row_vector(row))

    def frozen_rows(self, start: int, stop: int) -> tuple[Ids, NDArray[Any]]:
        """Copies of the frozen rows [start, stop): (m,) ids and (m, dim) vectors in the
        store's dtype."""
        frozen = self._frozen
        if frozen is None:
            raise RuntimeError("the store is not frozen")
        stop = min(stop, frozen.n)
        ids = self._ids[start:stop].copy()
        if self._file is not None:
            vecs = self._file.read(start, stop)
        else:
            vecs = self._vecs[start:stop].copy()
        for row, (id_, vec) in frozen.saved.items():
            if start <= row < stop:
                ids[row - start] = id_
                vecs[row - start] = vec
        return ids, vecs

    def frozen_take(self, rows: NDArray[np.int64]) -> Vectors:
        """(m, dim) float32 frozen vectors of `rows` (a training sample for a rebuild)."""
        frozen = self._frozen
        if frozen is None:
            raise RuntimeError("the store is not frozen")
        vecs = self.take(rows)
        for i, row in enumerate(rows.tolist()):
            saved = frozen.saved.get(row)
            if saved is not None:
                vecs[i] = saved[1]
        return vecs

    def contains(self, id_: int) -> bool:
        return id_ in self._row

    def upsert(self, ids: Ids, vectors: Vectors) -> Ids:
        """Insert or overwrite (ids unique); returns the (m,) ids that replaced an existing
        vector."""
        self._reserve(len(ids))
        first_new = self._n
        replaced: list[int] = []
        replaced_at: list[int] = []
        new_at: list[int] = []
        for i, id_ in enumerate(ids.tolist()):
            row = self._row.get(id_)
            if row is None:
                row = self._n
                self._preserve(row)  # a row vacated since the freeze, now refilled
                self._row[id_] = row
                self._ids[row] = id_
                self._n += 1
                new_at.append(i)
            else:
                self._preserve(row)
                replaced.append(id_)
                replaced_at.append(i)
        if new_at:  # the new rows are [first_new, n), in the order of `new_at`
            block = vectors if len(new_at) == len(ids) else vectors[new_at]
            self._put(first_new, block)
        for i, id_ in zip(replaced_at, replaced, strict=True):
            self._put(self._row[id_], vectors[i : i + 1])
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
                self._put(row, self._row_vector(last)[None, :])
                self._row[moved] = row
            self._n -= 1
        if removed:
            self._sorted = None
        return np.asarray(removed, dtype=np.int64)

    def rows_of(self, ids: Ids) -> tuple[Ids, NDArray[np.int64]]:
        """(found ids in the order given, their rows); absent ids are left out. The dict
        lookups run in C (`map` over `dict.get`): re-ranking looks up hundreds per query."""
        ids = np.asarray(ids, dtype=np.int64)
        rows = np.fromiter(map(self._row.get, ids.tolist(), itertools.repeat(-1)),
                           dtype=np.int64, count=len(ids))
        found = rows >= 0
        return ids[found], rows[found]

    def sorted_ids(self) -> Ids:
        if self._sorted is None:
            self._sorted = np.sort(self.ids)
        return self._sorted

    def ids_after(self, after: int, limit: int) -> Ids:
        ordered = self.sorted_ids()
        start = int(np.searchsorted(ordered, after, side="right"))
        return ordered[start : start + limit].copy()

    def close(self) -> None:
        """Release the file (the memory store has nothing to release)."""
        if self._file is not None:
            self._file.close()
