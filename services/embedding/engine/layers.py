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

# erf(u) = tanh(u P(u^2)), P of degree 6 fitted to atanh(erf u) / u on [0, 4.2] (least squares
# in float64, reweighted towards the minimax error of the GELU, u^2 (1 - erf^2 u) / max(1, u)
# per unit of P). Error of u (1 + erf u) in float32 at most 2.6e-7 relative to max(1, |u|) over
# -12..12; beyond 4.2, u P(u^2) grows (7.4 at 3.5), so tanh is 1 to float32 rounding and
# inf for huge |u| gives the right u (1 +- 1). NumPy's float32 tanh costs half its exp on
# AVX-512 (measured: 0.18 against 0.37 ns per element), and the form is 18 passes with two
# scratch arrays against 19 with three for A&S 7.1.26 (one division, one exp, one exp of -a^2).
_TANH_P = tuple(np.float32(c) for c in (
    1.1283804036443628, 0.10276144014704304, -0.00017750499354525734, -0.0006305595808813601,
    9.127649839485465e-05, -6.2132140449122365e-06, 1.7088250471897137e-07))
_ONE = np.float32(1.0)
# Elements per pass: 2 scratch rows of 64K floats (0.5 MB per thread), so a block and its two
# scratch arrays (768 KB) stay in a Zen 5 core's 1 MB L2. Measured there, the GELU of 1028x1536,
# CPU time of one thread: 32K 2.6 ms, 64K 2.3 ms, 128K 2.6 ms; two threads each running one,
# wall: 32K 4.6 ms, 64K 4.4 ms, 128K 4.9 ms (A&S 7.1.26 at 128K: 3.3 ms and 6.6 ms).
GELU_BLOCK = 65536


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
    `bias` (H,), `scratch` (>= 2, GELU_BLOCK).

    erf(u) is tanh(u P(u^2)) with the fitted P above. The work goes by blocks of whole rows of
    about GELU_BLOCK elements, so every pass (the bias add included) runs in cache.
    """
    m, h = u.shape
    step = max(1, scratch.shape[1] // h)
    # u^2 and P overflow to inf for |u| > 1.8e19 (then u P is +-inf and tanh +-1, the right
    # limit); the overflow warning is silenced, not clamped (a pass more)
    with np.errstate(over="ignore"):
        for lo in range(0, m, step):
            _gelu_block(u[lo:lo + step], bias, scratch)
    return u


def _gelu_block(x: F32, bias: F32, scratch: F32) -> None:
    """One block of `gelu_scaled`: 18 passes over x and two scratch views of its shape."""
    c0, c1, c2, c3, c4, c5, c6 = _TANH_P
    x += bias
    shape = x.shape
    n = x.size
    s, p = (scratch[i, :n].reshape(shape) for i in range(2))
    np.multiply(x, x, out=s)
    np.multiply(s, c6, out=p)  # P(s) by Horner
    p += c5
    p *= s
    p += c4
    p *= s
    p += c3
    p *= s
    p += c2
    p *= s
    p += c1
    p *= s
    p += c0
    p *= x
    np.tanh(p, out=p)
    p += _ONE
    x *= p


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
