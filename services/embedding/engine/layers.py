"""The elementwise and per-head kernels of the forward pass, all in place on float32 rows.

Each works on a block of rows so its temporaries stay in cache, and allocates nothing when
given its scratch buffers. The model folds constants into the weights so these kernels can
stay short: the layer-norm affine into the next matrix, 1/sqrt(2) of the GELU into fc1 and
the remaining sqrt(2)/2 into fc2, the attention scale 1/sqrt(64) into the query weights.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.special import erf

F32 = NDArray[np.float32]


def normalize_rows(x: F32, out: F32, eps: float, stat: F32) -> F32:
    """(M, D) -> (x - mean) / sqrt(var + eps) per row, into `out`; `stat` is (M, 1) scratch."""
    np.mean(x, axis=1, keepdims=True, out=stat)
    np.subtract(x, stat, out=out)
    # var as the mean of squares of the centred rows (the reference's two-pass formula)
    np.einsum("ij,ij->i", out, out, out=stat[:, 0])
    stat *= np.float32(1.0 / x.shape[1])
    stat += np.float32(eps)
    np.sqrt(stat, out=stat)
    np.divide(out, stat, out=out)
    return out


def gelu_scaled(u: F32, tmp: F32) -> F32:
    """u * (1 + erf(u)) in place: the exact GELU of x = sqrt(2) u, up to the factor sqrt(2)/2
    that the model keeps in the next matrix."""
    erf(u, out=tmp)
    tmp += np.float32(1.0)
    u *= tmp
    return u


def swiglu(gate_up: F32, hidden: int, out: F32) -> F32:
    """(M, 2H) [gate | up] -> silu(gate) * up, (M, H) into `out` (gate half used as scratch)."""
    gate = gate_up[:, :hidden]
    up = gate_up[:, hidden:]
    np.negative(gate, out=out)
    np.exp(out, out=out)
    out += np.float32(1.0)
    np.divide(gate, out, out=out)
    out *= up
    return out


def attend(q: F32, k: F32, v: F32, out: F32, scores: F32) -> F32:
    """One head: softmax(q k^T) v for (T, hd) q/k/v (scale already in q) into (T, hd) `out`.

    `scores` is (T, T) scratch. The softmax's division is applied to the (T, hd) output
    instead of the (T, T) probabilities: the same numbers, a 1/(T/hd) of the work.
    """
    np.matmul(q, k.T, out=scores)
    peak = scores.max(axis=1, keepdims=True)
    scores -= peak
    np.exp(scores, out=scores)
    total = scores.sum(axis=1, keepdims=True)
    np.matmul(scores, v, out=out)
    out /= total
    return out
