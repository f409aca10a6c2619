"""What the index benchmarks share: single-query timing, recall@K, and the exact top-K
gathered chunk by chunk (the base set never all in memory)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

K = 10


def timed(search: Any, xq: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Single-query p50, p99 (ms) and the (nq, K) ids found; one untimed call first."""
    search(xq[:1])
    times, found = [], []
    for q in xq:
        t = time.perf_counter()
        found.append(search(q[None, :])[:K])
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99)), np.asarray(found)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean recall@K of `found` (nq, >= K) against `truth` (nq, K)."""
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / K
                          for f, t in zip(found[:, :K], truth, strict=True)]))


def merge_truth(D: np.ndarray, I: np.ndarray, xq: np.ndarray, x: np.ndarray,
                first_id: int = 0, ids: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Fold a chunk (m, d) with ids first_id.. (or `ids`, (m,)) into the running exact top-K
    (nq, K)."""
    S = xq @ x.T  # (nq, m)
    cols = np.argpartition(-S, K - 1, axis=1)[:, :K]
    DD = np.hstack([D, np.take_along_axis(S, cols, axis=1)])
    II = np.hstack([I, cols + first_id if ids is None else np.asarray(ids)[cols]])
    order = np.argsort(-DD, axis=1, kind="stable")[:, :K]
    return np.take_along_axis(DD, order, axis=1), np.take_along_axis(II, order, axis=1)
