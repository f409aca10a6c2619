"""The engine's kernels against plain float64 formulas, including the inputs that take their
shortcuts: GELU on huge, tiny and non-finite-producing values, softmax with and without the
max subtraction."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from services.embedding.engine.layers import GELU_BLOCK, SOFTMAX_SAFE, attend_heads, gelu_scaled


def _gelu_reference(u: np.ndarray, bias: np.ndarray) -> np.ndarray:
    x = (u + bias).astype(np.float64)
    return x * (1.0 + np.vectorize(math.erf)(x))


@pytest.mark.parametrize("rows", [1, 7, 300])
def test_gelu_matches_erf_everywhere(rows: int) -> None:
    rng = np.random.default_rng(rows)
    width = 1024
    u = (rng.standard_normal((rows, width)) * 4).astype(np.float32)
    # values past exp's float32 range (a^2 > 88.7) and near it, both signs, and zeros
    u[0, :8] = [0.0, -0.0, 9.3, -9.35, 9.45, -9.5, 1e20, -1e20]
    bias = (rng.standard_normal(width) * 0.1).astype(np.float32)
    expected = _gelu_reference(u, bias)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning escapes
        got = gelu_scaled(u.copy(), bias, np.empty((3, GELU_BLOCK), np.float32))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_gelu_fit_holds_over_every_range() -> None:
    """The fitted tanh form of erf on a dense grid where erf bends (|u| < 12, steps of 1.2e-5)
    and on every scale from 1e-30 to 1e30, both signs: past the fit's interval u P(u^2) must
    keep growing, so that tanh stays at 1."""
    dense = np.linspace(-12, 12, 2_000_000)
    scales = np.geomspace(1e-30, 1e30, 20_000)
    u = np.concatenate([dense, scales, -scales]).astype(np.float32).reshape(-1, 1000)
    bias = np.zeros(u.shape[1], np.float32)
    expected = _gelu_reference(u, bias)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = gelu_scaled(u.copy(), bias, np.empty((2, GELU_BLOCK), np.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def _attention_reference(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    s = np.einsum("ntd,nsd->nts", q.astype(np.float64), k.astype(np.float64))
    s -= s.max(axis=2, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=2, keepdims=True)
    return np.einsum("nts,nsd->ntd", p, v.astype(np.float64))


@pytest.mark.parametrize("scale", [0.3, 10.0], ids=["bounded", "large-scores"])
def test_attend_heads_both_softmax_paths(scale: float) -> None:
    """Small scores skip the max subtraction, large ones (which would overflow exp) take it;
    both give softmax(q k^T) v. Inputs are strided views, as the model passes them. The
    tolerance grows with the largest score: float32 products round each score by about
    1e-7 of its size, whichever BLAS kernel computes them."""
    rng = np.random.default_rng(1)
    n, t, hd = 3, 50, 16
    qkv = rng.standard_normal((t, n, 3, hd)).astype(np.float32)
    qkv[..., 0, :] *= scale
    q, k, v = (qkv[:, :, i].transpose(1, 0, 2) for i in range(3))
    bound = np.sqrt((q * q).sum(-1).max() * (k * k).sum(-1).max())
    assert (bound < SOFTMAX_SAFE) == (scale < 1)
    largest = float(np.abs(np.einsum("ntd,nsd->nts", q, k)).max())
    assert (largest > 88.8) == (scale > 1)  # exp would overflow without the subtraction
    out_rows = np.zeros((t, n, hd), np.float32)
    out = out_rows.transpose(1, 0, 2)
    attend_heads(q, k, v, out, np.empty((n, t, t), np.float32))
    assert np.isfinite(out_rows).all()
    np.testing.assert_allclose(out, _attention_reference(q, k, v), rtol=1e-4,
                               atol=max(1e-5, 1e-6 * largest))
