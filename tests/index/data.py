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


class EmbeddingLike:
    """Vectors whose neighbour structure resembles image embeddings, generated in chunks.

    - a decaying PCA spectrum: variance of the i-th principal direction ~ (i + 1)^-`decay`,
      in a seeded random orthonormal basis of R^d;
    - clusters of very unequal size (Zipf, exponent `zipf`) whose centres are drawn from the
      same spectrum, with a spread (`spread` times the centres' scale) that makes them
      overlap;
    - queries held out from the base set (drawn with another seed) and perturbed.

    Chunk i of the base set depends only on (seed, i): chunks can be generated in any order,
    again after an interruption, and never all at once. Vectors are unit length, float32.
    """

    def __init__(self, d: int, *, clusters: int, decay: float = 1.0, zipf: float = 1.1,
                 spread: float = 0.8, seed: int = 0, chunk: int = 100_000) -> None:
        rng = np.random.default_rng([seed, 0])
        self.d, self.chunk, self.seed, self.spread = d, chunk, seed, spread
        self.scale = ((np.arange(d) + 1.0) ** (-decay / 2)).astype(np.float32)  # std devs
        self.basis = np.linalg.qr(rng.standard_normal((d, d)))[0].astype(np.float32)  # (d, d)
        self.centres = rng.standard_normal((clusters, d)).astype(np.float32) * self.scale
        p = (np.arange(clusters) + 1.0) ** -zipf
        self.cdf = np.cumsum(p / p.sum())

    def _draw(self, rng: np.random.Generator, m: int, spread: float) -> NDArray[np.float32]:
        labels = np.minimum(np.searchsorted(self.cdf, rng.random(m)), len(self.cdf) - 1)
        z = self.centres[labels] + spread * rng.standard_normal(
            (m, self.d), dtype=np.float32) * self.scale  # (m, d) in the principal basis
        x = z @ self.basis.T
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x

    def chunks(self, n: int) -> int:
        return -(-n // self.chunk)

    def base_chunk(self, i: int, n: int) -> NDArray[np.float32]:
        """(m, d) rows [i * chunk, min((i + 1) * chunk, n)) of the base set."""
        m = min(self.chunk, n - i * self.chunk)
        return self._draw(np.random.default_rng([self.seed, 1, i]), m, self.spread)

    def sample(self, m: int) -> NDArray[np.float32]:
        """(m, d) more vectors of the same distribution, not in the base set (training)."""
        return self._draw(np.random.default_rng([self.seed, 2]), m, self.spread)

    def queries(self, nq: int, noise: float = 0.3) -> NDArray[np.float32]:
        """(nq, d) held-out vectors, perturbed by `noise` times the spectrum's scale."""
        rng = np.random.default_rng([self.seed, 3])
        x = self._draw(rng, nq, self.spread)
        x += noise * (rng.standard_normal((nq, self.d), dtype=np.float32) * self.scale
                      ) @ self.basis.T
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x
