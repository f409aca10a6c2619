"""bench/engine_profile.py times the engine's own block step (`Dinov2Model.block_step`) step by
step; the script checks its loop against `forward` before it reports anything."""

from __future__ import annotations

import numpy as np
import pytest

from bench.engine_profile import (
    ORT_GROUPS,
    ORT_OTHER,
    STEPS,
    WAIT,
    product_halves,
    product_winograd,
    profile,
    profile_ort,
    profile_split,
    winograd_product,
    winograd_weights,
)
from tests.helpers.requirements import require_module


def test_profiled_loop_is_the_engine_and_every_step_is_timed() -> None:
    steps, total = profile("dinov2_vits14", images=1, rounds=1)
    assert set(steps) == set(STEPS)
    assert all(ms > 0 for ms in steps.values())
    assert total == sum(steps.values())


def test_split_profile_times_both_threads_of_the_row_split() -> None:
    """Batch 1 with the rows split over two threads (the loop raises if it stops matching
    `forward`): every step of both threads is timed, the barrier only on the split."""
    timed = profile_split("dinov2_vits14", rounds=1)
    assert set(timed) == {"one", "cpu", "wall"}
    for kind, steps in timed.items():
        assert set(steps) == {*STEPS, WAIT}
        assert all(steps[step] > 0 for step in STEPS), kind
    assert timed["one"][WAIT] == 0 and timed["wall"][WAIT] > 0
    # a thread's CPU time fits in its wall time, step by step (clock reads aside)
    assert all(timed["cpu"][step] <= timed["wall"][step] + 0.5 for step in STEPS)


def test_product_halves_time_every_product_of_a_block() -> None:
    rows = product_halves("dinov2_vits14", calls=3)
    assert [name for name, *_ in rows] == ["QKV", "projection", "fc1", "fc2"]
    assert all(us > 0 and by_rows > 0 and by_columns > 0 for _, us, by_rows, by_columns in rows)


def test_winograd_product_is_the_product() -> None:
    """The Strassen-Winograd product the bench times beside sgemm computes x @ w.T, on
    every quarter of the output (a wrong sign in any of the 7 products or 11 adds shows)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((12, 8), dtype=np.float32)
    w = rng.standard_normal((6, 8), dtype=np.float32)
    out = np.full((12, 6), np.nan, np.float32)
    scratch = [np.empty((6, 4), np.float32) for _ in range(4)]
    winograd_product(x, winograd_weights(w), out, scratch, np.empty((6, 3), np.float32))
    np.testing.assert_allclose(out, x.astype(np.float64) @ w.T.astype(np.float64),
                               rtol=1e-5, atol=1e-5)
    rows = product_winograd("dinov2_vits14", rows=64, calls=2)
    assert [name for name, *_ in rows] == ["QKV", "projection", "fc1", "fc2"]
    assert all(us > 0 and ratio > 0 and 0 < err_wino < 1e-3 and err_sgemm < 1e-3
               for _, us, ratio, err_sgemm, err_wino in rows)


@pytest.mark.torch
@pytest.mark.slow
def test_onnx_runtime_profile_groups_its_operators() -> None:
    """The peer's profile: every operator's kernel time lands in a group, products lead."""
    require_module("torch")
    require_module("onnxruntime")
    groups, total = profile_ort("dinov2_vits14", images=1, rounds=1)
    assert set(groups) <= {*ORT_GROUPS.values(), ORT_OTHER}
    assert {"matrix products", "GELU", "softmax", "layer norms"} <= set(groups)
    assert total == sum(groups.values()) and groups["matrix products"] > 0.3 * total
