"""Our click path (ClickDecoder inside Segmenter) gives exactly SamPredictor.predict's masks,
scores and low-res logits, bit for bit, with and without the other candidates, on random
weights. The comparison runs in a child process: torch stays out of pytest."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers.procs import REPO

pytestmark = [pytest.mark.torch, pytest.mark.slow]


@pytest.mark.parametrize(("seed", "threads"), [(0, 1), (7, 2)])
def test_masks_equal_sam_predictor(seed: int, threads: int) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.segmentation.decoder_check", str(seed), str(threads)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["compared"] == 48
    assert result["mismatches"] == []
