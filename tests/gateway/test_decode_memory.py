"""8 concurrent hostile small files against real processes: the gateway's and the embedding
service's peak memory stays under the stated bound, and every answer is a clean 4xx/503 or a
result (never a 500). The figures for both configurations are in docs/benchmarks.md
(bench/hostile.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.hostile import measure
from tests.helpers.stack import running_stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUDGET_MB = 256
# Beyond the budget itself: the reduced copies, a float32 block, allocator slack.
SLACK_MB = 128


def test_peak_memory_under_hostile_files_stays_bounded(tmp_path: Path) -> None:
    with running_stack(tmp_path, worker=False,
                       extra_env={"IMGSEARCH_DECODE_BUDGET_MB": str(BUDGET_MB)}) as stack:
        result = measure(stack)
    before, after, codes = result["before"], result["after"], result["codes"]
    assert 500 not in codes and set(codes) <= {200, 400, 413, 415, 503}, codes
    assert 413 in codes  # the sketches: 40 MP is over the sketch pixel limit
    assert after["embedding"] - before["embedding"] < BUDGET_MB + SLACK_MB, result
    assert after["gateway"] - before["gateway"] < SLACK_MB, result
