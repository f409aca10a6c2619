"""Exact inner-product search over a matrix of vectors, in blocks.

faiss-cpu's `IndexFlatIP` stays off BLAS below `distance_compute_blas_threshold` queries and
its bundled BLAS is slow on this CPU; a NumPy matmul + argpartition per block of the stored
matrix is the default here (bench/index.py measures both: docs/benchmarks.md, "index").
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray

from services.index.store.protocol import Ids, Vectors

ExactEngine = Literal["numpy", "faiss"]

PAD_SCORE = np.float32(-np.inf)


def _topk_block(scores: NDArray[np.float32], k: int) -> tuple[NDArray[np.float32], Ids]:
    """(nq, b) scores -> the k best per row (unordered) as (nq, k') scores and columns."""
    b = scores.shape[1]
    if k >= b:
        cols = np.broadcast_to(np.arange(b), scores.shape).copy()
        return scores, cols
    cols = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return np.take_along_axis(scores, cols, axis=1), cols


def search_numpy(
    xq: Vectors, xb: Vectors, k: int, block: int = 262144
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """(nq, d) queries, (n, d) base -> D (nq, k) best first, I (nq, k) rows (-1 pads)."""
    nq, n = xq.shape[0], xb.shape[0]
    best_d = np.full((nq, 0), PAD_SCORE, dtype=np.float32)
    best_i = np.empty((nq, 0), dtype=np.int64)
    for start in range(0, n, block):
        scores = xq @ xb[start : start + block].T  # (nq, b)
        d, cols = _topk_block(scores, k)
        best_d = np.concatenate([best_d, d], axis=1)
        best_i = np.concatenate([best_i, cols + start], axis=1)
        if best_d.shape[1] > k:
            best_d, keep = _topk_block(best_d, k)
            best_i = np.take_along_axis(best_i, keep, axis=1)
    order = np.argsort(-best_d, axis=1, kind="stable")
    best_d = np.take_along_axis(best_d, order, axis=1)
    best_i = np.take_along_axis(best_i, order, axis=1)
    if best_d.shape[1] < k:
        pad = k - best_d.shape[1]
        best_d = np.pad(best_d, ((0, 0), (0, pad)), constant_values=PAD_SCORE)
        best_i = np.pad(best_i, ((0, 0), (0, pad)), constant_values=-1)
    return best_d.astype(np.float32, copy=False), best_i


def search_faiss(xq: Vectors, xb: Vectors, k: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """The same answer through `faiss.knn` (its BLAS threshold is set from the settings)."""
    import faiss

    if xb.shape[0] == 0:
        return (np.full((xq.shape[0], k), PAD_SCORE, dtype=np.float32),
                np.full((xq.shape[0], k), -1, dtype=np.int64))
    D, I = faiss.knn(np.ascontiguousarray(xq), np.ascontiguousarray(xb), min(k, xb.shape[0]),
                     metric=faiss.METRIC_INNER_PRODUCT)
    if D.shape[1] < k:
        pad = k - D.shape[1]
        D = np.pad(D, ((0, 0), (0, pad)), constant_values=PAD_SCORE)
        I = np.pad(I, ((0, 0), (0, pad)), constant_values=-1)
    return D.astype(np.float32, copy=False), I.astype(np.int64, copy=False)


def search_exact(
    xq: Vectors, xb: Vectors, ids: Ids, k: int, engine: ExactEngine = "numpy"
) -> tuple[NDArray[np.float32], Ids]:
    """Exact search of (nq, d) queries over (n, d) `xb` whose rows carry (n,) `ids`."""
    if engine == "faiss":
        D, rows = search_faiss(xq, xb, k)
    else:
        D, rows = search_numpy(xq, xb, k)
    I = np.where(rows >= 0, ids[np.clip(rows, 0, None)] if len(ids) else -1, -1)
    return D, I.astype(np.int64, copy=False)
