"""bench/engine_profile.py times a copy of the engine's per-thread loop step by step; the copy
must stay the engine's (the script checks it against `forward` before it reports anything)."""

from __future__ import annotations

from bench.engine_profile import STEPS, profile


def test_profiled_loop_is_the_engine_and_every_step_is_timed() -> None:
    steps, total = profile("dinov2_vits14", images=1, rounds=1)
    assert set(steps) == set(STEPS)
    assert all(ms > 0 for ms in steps.values())
    assert total == sum(steps.values())
