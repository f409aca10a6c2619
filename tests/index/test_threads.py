"""The index service holds NumPy's BLAS to the calling thread (its pthreads workers spin
after every call, a core taken from the embedding service under frequent small searches) and
leaves Faiss's OpenMP threads as configured. Checked in a fresh process: the limit is for the
life of the process, and the test run's own must stay as it is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import json
import numpy as np
import faiss
from threadpoolctl import threadpool_info
from services.index.config import IndexSettings
from services.index.main import _configure_faiss

before = {lib["filepath"]: lib["num_threads"] for lib in threadpool_info()}
_configure_faiss(IndexSettings(threads=2))
after = threadpool_info()
x = np.ones((9, 64), np.float32) @ np.ones((64, 4000), np.float32)
print(json.dumps({"before": before, "after": after, "product": float(x[0, 0])}))
"""


def test_numpy_blas_runs_on_the_calling_thread_and_faiss_keeps_its_threads(tmp_path: Path
                                                                           ) -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=True,
                          env={"PATH": "/usr/bin:/bin", "IMGSEARCH_DATA_DIR": str(tmp_path),
                               "IMGSEARCH_INTERNAL_TOKEN": "t" * 32})
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    after = {lib["filepath"]: lib for lib in seen["after"]}
    pthreads = [lib for lib in after.values() if lib.get("threading_layer") == "pthreads"]
    assert pthreads, "NumPy's OpenBLAS (pthreads) is not among the loaded libraries"
    assert all(lib["num_threads"] == 1 for lib in pthreads)
    openmp = [lib for lib in after.values() if lib["internal_api"] == "openmp"]
    assert openmp and all(lib["num_threads"] == 2 for lib in openmp)
    assert seen["product"] == 64.0
