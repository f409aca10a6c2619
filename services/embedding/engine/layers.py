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
# exp(-a^2) for a > 9 is below 7e-36 and only makes denormals, which cost microcode assists
# (measured: the kernel twice as slow on wide activations); the result is unchanged, and
# exp(81) = 1.5e35 does not overflow.
_AS_CLAMP = np.float32(9.0)
# Elements per pass: 3 scratch rows of 64K floats (768 KB) stay in L2 (measured: 16K-128K
# equal within noise; the whole 257x3072 array at once is 2x slower, 4K is call-bound).
GELU_BLOCK = 65536


def normalize_rows(x: F32, out: F32, eps: float, stat: F32) -> F32:
    """(M, D) -> (x - mean) / sqrt(var + eps) per row, into `out`; `stat` is (M, 1) scratch."""
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
    u (1 + erf(u)) = u + a - a E for both signs. E comes from A&S 7.1.26 (one reciprocal, one
    exp, a degree-5 polynomial). The work goes by blocks of whole rows of about GELU_BLOCK
    elements, so every pass (the bias add included) runs in cache; about 7x faster than
    scipy.special.erf, which is scalar code per element.
    """
    c1, c2, c3, c4, c5 = _AS_C
    m, h = u.shape
    step = max(1, scratch.shape[1] // h)
    for lo in range(0, m, step):
        x = u[lo:lo + step]
        x += bias
        shape = x.shape
        n = x.size
        a, t, e = (scratch[i, :n].reshape(shape) for i in range(3))
        np.abs(x, out=a)
        np.add(a, _AS_INV_P, out=t)
        np.reciprocal(t, out=t)
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
        np.minimum(a, _AS_CLAMP, out=t)
        np.multiply(t, t, out=t)
        np.exp(t, out=t)
        e /= t
        e *= a
        x += a
        x -= e
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
