"""Bicubic resampling of the position-embedding grid, as PyTorch's `interpolate` does it.

Two kernels, because the two Hugging Face models differ:
- `Dinov2Model`: `mode="bicubic", align_corners=False` without antialiasing: 4 taps of
  Keys' cubic with a = -0.75 at source coordinate (i + 0.5) * in/out - 0.5, indices clamped
  to the border.
- `Dinov2WithRegistersModel`: the same call with `antialias=True`, which PyTorch implements
  as PIL does: a = -0.5, the kernel stretched by in/out when shrinking, weights normalised.
Both are separable, so each becomes a pair of (out, in) matrices applied along rows and
columns in float64.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray


def _cubic(x: NDArray[np.float64], a: float) -> NDArray[np.float64]:
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def _cubic32(x: NDArray[np.float32], a: np.float32) -> NDArray[np.float32]:
    one, two, three = np.float32(1), np.float32(2), np.float32(3)
    five, eight, four = np.float32(5), np.float32(8), np.float32(4)
    near = ((a + two) * x - (a + three)) * x * x + one
    far = ((a * x - five * a) * x + eight * a) * x - four * a
    out: NDArray[np.float32] = np.where(x <= one, near, far).astype(np.float32)
    return out


def bicubic_matrix(n_in: int, n_out: int) -> NDArray[np.float64]:
    """(n_out, n_in) weights of PyTorch's bicubic resize (a = -0.75, align_corners=False)."""
    # PyTorch computes the source coordinate and the tap weights in float32; so do we, since
    # the float64 coordinate differs enough (1e-5 on non-integer scales) to matter.
    f32 = np.float32
    scale = f32(n_in) / f32(n_out)
    matrix = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = scale * (f32(i) + f32(0.5)) - f32(0.5)
        base = math.floor(src)
        t = f32(src - f32(base))
        taps = np.array([t + f32(1), t, f32(1) - t, f32(2) - t], dtype=np.float32)
        weights = _cubic32(taps, f32(-0.75))
        for k, w in enumerate(weights):
            matrix[i, min(max(base - 1 + k, 0), n_in - 1)] += w
    return matrix


def bicubic_aa_matrix(n_in: int, n_out: int) -> NDArray[np.float64]:
    """(n_out, n_in) weights of PyTorch's antialiased bicubic resize (a = -0.5)."""
    scale = n_in / n_out
    support = 2.0 * scale if scale >= 1.0 else 2.0
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    matrix = np.zeros((n_out, n_in))
    for i in range(n_out):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        js = np.arange(lo, hi)
        weights = _cubic((js - center + 0.5).astype(np.float64) * inv, -0.5)
        total = weights.sum()
        matrix[i, lo:hi] = weights / total if total != 0 else weights
    return matrix


def resize_grid(grid: NDArray[np.float32], out_h: int, out_w: int,
                *, antialias: bool = False) -> NDArray[np.float32]:
    """(h, w, D) -> (out_h, out_w, D) bicubic resampling (see the module docstring)."""
    h, w, _ = grid.shape
    make = bicubic_aa_matrix if antialias else bicubic_matrix
    rows, cols = make(h, out_h), make(w, out_w)
    src = grid.astype(np.float64)
    out = np.einsum("ia,jb,abd->ijd", rows, cols, src, optimize=True)
    return out.astype(np.float32)
