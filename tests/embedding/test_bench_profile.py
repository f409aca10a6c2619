"""bench/engine_profile.py times the engine's own block step (`Dinov2Model.block_step`) step by
step; the script checks its loop against `forward` before it reports anything."""

from __future__ import annotations

import pytest

from bench.engine_profile import ORT_GROUPS, ORT_OTHER, STEPS, profile, profile_ort
from tests.helpers.requirements import require_module


def test_profiled_loop_is_the_engine_and_every_step_is_timed() -> None:
    steps, total = profile("dinov2_vits14", images=1, rounds=1)
    assert set(steps) == set(STEPS)
    assert all(ms > 0 for ms in steps.values())
    assert total == sum(steps.values())


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
