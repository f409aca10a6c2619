"""bench/engine_profile.py times the engine's own block step (`Dinov2Model.block_step`) step by
step; the script checks its loop against `forward` before it reports anything."""

from __future__ import annotations

from bench.engine_profile import STEPS, profile


def test_profiled_loop_is_the_engine_and_every_step_is_timed() -> None:
    steps, total = profile("dinov2_vits14", images=1, rounds=1)
    assert set(steps) == set(STEPS)
    assert all(ms > 0 for ms in steps.values())
    assert total == sum(steps.values())
