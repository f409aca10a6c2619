"""Search restricted to allowed ids (catalog tag filters), and exact re-ranking.

Small allowed sets are brute-forced over their gathered rows: exact, and cheaper than any
graph walk. Large sets go through the approximate index with an `IDSelectorBatch` and an
enlarged candidate list; a query that still comes back with fewer than k results (a selective
filter starves the graph or the probed lists) is answered exactly instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from services.index.store.ann import AnnIndex
from services.index.store.exact import PAD_SCORE, ExactEngine, search_exact
from services.index.store.params import FaissParams
from services.index.store.protocol import Ids, Vectors
from services.index.store.vectorstore import VectorStore


def empty_result(nq: int, k: int) -> tuple[NDArray[np.float32], Ids]:
    return (np.full((nq, k), PAD_SCORE, dtype=np.float32), np.full((nq, k), -1, dtype=np.int64))


def merge_topk(D: NDArray[np.float32], I: Ids, d: NDArray[np.float32], i: Ids, k: int
               ) -> tuple[NDArray[np.float32], Ids]:
    """Two (nq, k) results -> the k best of both, best first."""
    DD, II = np.hstack([D, d]), np.hstack([I, i])
    order = np.argsort(-DD, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(DD, order, axis=1), np.take_along_axis(II, order, axis=1)


def exact_over_store(store: VectorStore, xq: Vectors, k: int, engine: ExactEngine,
                     rows: NDArray[np.int64] | None = None) -> tuple[NDArray[np.float32], Ids]:
    """Exact search over every row of the store (or over `rows`): D, I (nq, k).

    A memory store is searched in place; a disk store block by block (about 32 MB read at a
    time), the blocks' results merged."""
    if not store.on_disk:
        xb = store.vectors if rows is None else store.vectors[rows]
        ids = store.ids if rows is None else store.ids[rows]
        return search_exact(xq, xb, ids, k, engine)
    from services.index.store.frozen import block_rows

    n = len(store) if rows is None else len(rows)
    step = block_rows(store.dim)
    D, I = empty_result(len(xq), k)
    for start in range(0, n, step):
        if rows is None:
            xb, ids = store.read(start, start + step), store.ids[start : start + step]
        else:
            part = rows[start : start + step]
            xb, ids = store.take(part), store.ids[part]
        d, i = search_exact(xq, xb, ids, k, engine)
        D, I = merge_topk(D, I, d, i, k)
    return D, I


def rerank(store: VectorStore, xq: Vectors, candidates: Ids, k: int
           ) -> tuple[NDArray[np.float32], Ids]:
    """(nq, c) candidate ids -> the k best by exact inner product: D, I (nq, k)."""
    D, I = empty_result(len(xq), k)
    for qi in range(len(xq)):
        cand = candidates[qi]
        ids, rows = store.rows_of(np.unique(cand[cand >= 0]))
        if not len(rows):
            continue
        scores = store.take(rows) @ xq[qi]  # (c,)
        top = np.argsort(-scores, kind="stable")[:k]
        D[qi, : len(top)] = scores[top]
        I[qi, : len(top)] = ids[top]
    return D, I


def fill_short(store: VectorStore, xq: Vectors, k: int, D: NDArray[np.float32], I: Ids,
               rows: NDArray[np.int64] | None, params: FaissParams) -> None:
    """Answer exactly (in place) every query that found fewer than min(k, available)."""
    available = len(store) if rows is None else len(rows)
    short = np.flatnonzero((I >= 0).sum(axis=1) < min(k, available))
    if not len(short):
        return
    d, i = exact_over_store(store, xq[short], k, params.exact_engine, rows)
    D[short], I[short] = d, i


@dataclass
class Filter:
    """An allowed set resolved against one state of the approximate structure: the (m,)
    ascending unique ids, how many of them have a live label (`live`), their labels (when
    resolved from scratch) and, once a search needed it, the bitmap of those labels.

    Valid for the state it was resolved against. A tag filter is kept between searches
    (`FaissIndex`) and patched after writes (`patched`): repeated queries of a tag skip
    the work, also while ingest writes."""

    allowed: Ids
    live: int
    labels: Ids | None = None
    bitmap: NDArray[np.uint8] | None = None

    @classmethod
    def of(cls, ann: AnnIndex | None, allowed: Ids, *, is_sorted: bool = False) -> Filter:
        allowed = allowed if is_sorted else np.unique(allowed)
        if ann is None:
            return cls(allowed, len(allowed))
        labels = ann.labels_of_sorted(allowed)
        return cls(allowed, len(labels), labels)

    def bitmap_for(self, ann: AnnIndex) -> NDArray[np.uint8]:
        """The bitmap of the live labels (built once, kept)."""
        if self.bitmap is None:
            labels = self.labels if self.labels is not None \
                else ann.labels_of_sorted(self.allowed)
            self.bitmap = ann.bitmap_of(labels)
        return self.bitmap

    def patched(self, ann: AnnIndex | None, ids: Ids, old_labels: Ids, member: NDArray[np.bool_]
                ) -> Filter:
        """This filter after writes to (p,) ascending `ids` only: `old_labels` their labels
        when this filter was resolved (-1: none), `member` whether each carries the filter's
        tags now; `ann` is the structure now (the same object as then). O(m) memory moves
        and O(p) lookups, never O(n) over the whole structure; a new object (searches may
        still hold this one)."""
        allowed = self.allowed
        pos = np.searchsorted(allowed, ids)
        was = (pos < len(allowed)) & (allowed[np.minimum(pos, max(len(allowed) - 1, 0))] == ids) \
            if len(allowed) else np.zeros(len(ids), bool)
        allowed = np.delete(allowed, pos[was])
        new = ids[member]
        allowed = np.insert(allowed, np.searchsorted(allowed, new), new)
        if ann is None:
            return Filter(allowed, len(allowed))
        now = ann.labels_of(new)  # the live ones only
        gone = old_labels[was & (old_labels >= 0)]
        live = self.live - len(gone) + len(now)
        bitmap = None
        if self.bitmap is not None:
            bitmap = np.zeros((ann.next_label + 7) // 8, np.uint8)
            keep = min(len(bitmap), len(self.bitmap))
            bitmap[:keep] = self.bitmap[:keep]
            np.bitwise_and.at(bitmap, gone >> 3, ~np.left_shift(1, gone & 7).astype(np.uint8))
            np.bitwise_or.at(bitmap, now >> 3, np.left_shift(1, now & 7).astype(np.uint8))
        return Filter(allowed, live, None, bitmap)


def search_filtered(store: VectorStore, ann: AnnIndex | None, xq: Vectors, k: int,
                    allowed: Ids | Filter, params: FaissParams, extra: Ids | None = None
                    ) -> tuple[NDArray[np.float32], Ids]:
    """(nq, d) queries over the live vectors whose ids are in `allowed` -> D, I (nq, k).

    `extra`: (m,) ids not yet in `ann` (upserted during a snapshot), always re-scored.
    Large sets never loop over their ids in Python: their labels come from a binary search
    (`AnnIndex.labels_of_sorted`) and reach Faiss as a bitmap (both kept in a `Filter`)."""
    flt = allowed if isinstance(allowed, Filter) else Filter.of(ann, allowed)
    allowed = flt.allowed
    if extra is not None:
        extra = extra[np.isin(extra, allowed)]
    exact_max = params.filter_exact_max
    if store.on_disk and ann is not None:
        # Each row is a read from the file: past a few times the rows a re-ranking reads,
        # the approximate path with the bitmap is cheaper.
        exact_max = min(exact_max, 4 * params.candidates(ann.index_type, k, ann.live))
    if ann is None or flt.live <= exact_max:
        if ann is None:
            small = allowed
        else:
            live = ann.label_ids[flt.labels if flt.labels is not None
                                 else ann.labels_of_sorted(allowed)]
            small = np.unique(np.concatenate([
                live, extra if extra is not None else np.empty(0, np.int64)]))
        _, rows = store.rows_of(small)
        if not len(rows):
            return empty_result(len(xq), k)
        return exact_over_store(store, xq, k, params.exact_engine, rows)
    candidates = ann.search(xq, params.candidates(ann.index_type, k, ann.live),
                            allowed_bitmap=flt.bitmap_for(ann))
    if extra is not None and len(extra):
        candidates = np.hstack([candidates, np.broadcast_to(extra, (len(xq), len(extra)))])
    D, I = rerank(store, xq, candidates, k)
    if ((I >= 0).sum(axis=1) < k).any():  # rare: gather the rows only then
        _, rows = store.rows_of(allowed)
        fill_short(store, xq, k, D, I, rows, params)
    return D, I
