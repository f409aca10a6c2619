"""The elementwise and per-head kernels of the forward pass, all in place on float32 rows.

Each works on a block of rows so its temporaries stay in cache, and allocates nothing when
given its scratch buffers. The model folds constants into the weights so these kernels can
stay short: the layer-norm affine into the next matrix, 1/sqrt(2) of the GELU into fc1 and
the remaining sqrt(2)/2 into fc2, the attention scale 1/sqrt(64) into the query weights.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]

# Abramowitz & Stegun 7.1.26: erfc(a) = t (c1 + t (c2 + ... + t c5)) exp(-a^2),
# t = 1 / (1 + p a), a >= 0, absolute error <= 1.5e-7 (below float32 rounding of the GELU).
# Evaluated in s = 1 / (1/p + a) = p t, with p^-k folded into the coefficients: one pass
# fewer than forming t.
_AS_P = 0.3275911
_AS_INV_P = np.float32(1.0 / _AS_P)
_AS_C = tuple(np.float32(c / _AS_P ** k) for k, c in enumerate(
    (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429), start=1))
# exp(a^2) overflows to inf for a > 9.42; the division by it then gives the right 0 (erfc(a) <
# 1e-39 there), and an overflowing exp costs no more than any other (measured), so no clamp
# pass; the overflow warning is silenced instead.
_ONE = np.float32(1.0)
# Elements per pass: 3 scratch rows of 128K floats (1.5 MB per thread). Measured on a 2-core
# Zen 4 (1 MB L2 per core), two threads each running the GELU of 1028x1536: 64K 4.8 ms,
# 128K 4.2 ms, 256K 3.9 ms (fewer, larger calls wait less for the interpreter lock), 1M
# slower; 256K would put the ViT-B process over its memory budget (1.5x the weights).
GELU_BLOCK = 131072


def normalize_rows(x: F32, out: F32, eps: float, stat: F32, mean_col: F32 | None = None) -> F32:
    """(M, D) -> (x - mean) / sqrt(var + eps) per row, into `out`; `stat` is (M, 1) scratch.
    With `mean_col`, a (D, 1) column of 1/D, the means are a matrix-vector product (measured
    with one BLAS thread, 128-1028 rows of 384: 25-40% less time for the whole norm than
    `np.mean`, whose reduction has more call overhead)."""
    if mean_col is not None:
        np.matmul(x, mean_col, out=stat)
    else:
        np.mean(x, axis=1, keepdims=True, out=stat)
    np.subtract(x, stat, out=out)
    # var as the mean of squares of the centred rows (the reference's two-pass formula)
    np.einsum("ij,ij->i", out, out, out=stat[:, 0])
    stat *= np.float32(1.0 / x.shape[1])
    stat += np.float32(eps)
    np.sqrt(stat, out=stat)
    # one division per row, then a multiply per element (a vector divide costs ~10x more)
    np.reciprocal(stat, out=stat)
    out *= stat
    return out


def gelu_scaled(u: F32, bias: F32, scratch: F32) -> F32:
    """u + bias, then u * (1 + erf(u)), in place: the exact GELU of x = sqrt(2) u, up to the
    factor sqrt(2)/2 that the model keeps in the next matrix. `u` is C-contiguous (M, H),
    `bias` (H,), `scratch` (3, GELU_BLOCK).

    With a = |u| and E = erfc(a): 1 + erf(u) is E for u < 0 and 2 - E for u >= 0, so
    u (1 + erf(u)) = u + a - a E for both signs. E comes from A&S 7.1.26 (one division, one
    exp, a degree-5 polynomial). The work goes by blocks of whole rows of about GELU_BLOCK
    elements, so every pass (the bias add included) runs in cache; about 7x faster than
    scipy.special.erf, which is scalar code per element. (Measured per element: a scalar
    np.minimum costs 3x an add and np.reciprocal 1.7x a division of 1 by the array, so
    neither is used.)
    """
    m, h = u.shape
    step = max(1, scratch.shape[1] // h)
    with np.errstate(over="ignore"):
        for lo in range(0, m, step):
            _gelu_block(u[lo:lo + step], bias, scratch)
    return u


def _gelu_block(x: F32, bias: F32, scratch: F32) -> None:
    """One block of `gelu_scaled`: 19 passes over x and three scratch views of its shape."""
    c1, c2, c3, c4, c5 = _AS_C
    x += bias
    shape = x.shape
    n = x.size
    a, t, e = (scratch[i, :n].reshape(shape) for i in range(3))
    np.abs(x, out=a)
    np.add(a, _AS_INV_P, out=t)
    np.divide(_ONE, t, out=t)
    np.multiply(t, c5, out=e)
    e += c4
    e *= t
    e += c3
    e *= t
    e += c2
    e *= t
    e += c1
    e *= t
    # exp(-a^2) as a division by exp(a^2): one pass fewer than negating
    np.multiply(a, a, out=t)
    np.exp(t, out=t)
    e /= t
    e *= a
    x += a
    x -= e


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


# exp overflows float32 above 88.7: softmax may skip its max subtraction while every score is
# known to stay below this (Cauchy-Schwarz: |q.k| <= |q| |k|), which also keeps every exp(s)
# a normal number (>= exp(-80) = 1.8e-35).
SOFTMAX_SAFE = np.float32(80.0)


def attend_heads(q: F32, k: F32, v: F32, out: F32, scores: F32,
                 ones: F32 | None = None) -> F32:
    """Several heads at once: softmax(q k^T) v for (n, T, hd) q/k/v views (scale already in
    q) into the (n, T, hd) view `out`; `scores` is (n, T, T) scratch.

    One NumPy call per step for all n heads (strided views go to BLAS as they are), so a
    thread makes a few calls per block rather than a few per head: with several threads,
    each call's return to Python waits for the shared interpreter lock. The max subtraction
    (two passes over the (n, T, T) scores) is skipped when |q_i| max|k_j| bounds every score
    below SOFTMAX_SAFE, which gives the same probabilities up to rounding. The division is
    applied to the (n, T, hd) output instead of the (n, T, T) probabilities, and the row sums
    come from a product with `ones` ((T, 1), made when not given): 3.5x faster than
    `sum(axis=2)` over rows this short.
    """
    q2 = np.einsum("ntd,ntd->nt", q, q).max()
    k2 = np.einsum("ntd,ntd->nt", k, k).max()
    np.matmul(q, k.transpose(0, 2, 1), out=scores)
    if not q2 * k2 < SOFTMAX_SAFE * SOFTMAX_SAFE:  # also taken for a NaN bound
        scores -= scores.max(axis=2, keepdims=True)
    np.exp(scores, out=scores)
    if ones is None or ones.shape[0] != scores.shape[2]:
        ones = np.ones((scores.shape[2], 1), dtype=np.float32)
    total = np.matmul(scores, ones)
    np.matmul(scores, v, out=out)
    out /= total
    return out
