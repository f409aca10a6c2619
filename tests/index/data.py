"""Seeded synthetic data with structure: a normalised Gaussian mixture (uniform random
vectors have no near neighbours and make every approximate index look broken)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def gaussian_mixture(n: int, d: int, *, clusters: int = 32, spread: float = 0.5,
                     seed: int = 0) -> NDArray[np.float32]:
    """(n, d) unit vectors around `clusters` random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + spread * rng.standard_normal((n, d)).astype(
        np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def queries_near(xb: NDArray[np.float32], nq: int, *, noise: float = 0.1,
                 seed: int = 1) -> NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    xq = xb[rng.integers(0, len(xb), nq)] + noise * rng.standard_normal(
        (nq, xb.shape[1])).astype(np.float32)
    xq /= np.linalg.norm(xq, axis=1, keepdims=True)
    return xq.astype(np.float32)


def brute_force(xq: NDArray[np.float32], xb: NDArray[np.float32], ids: NDArray[np.int64],
                k: int) -> NDArray[np.int64]:
    """(nq, k) ids of the exact top-k by inner product (float64, full sort)."""
    scores = xq.astype(np.float64) @ xb.astype(np.float64).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return ids[order]


def recall_at_k(found: NDArray[np.int64], truth: NDArray[np.int64]) -> float:
    k = truth.shape[1]
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / (len(truth) * k)
