"""IVF training sample: bounded per list, never below what PQ codebooks need."""

from __future__ import annotations

import numpy as np

from services.index.store.ann import AnnIndex
from services.index.store.params import FaissParams


def test_train_sample_size() -> None:
    params = FaissParams()
    assert params.train_sample_size(1_000_000, 4000) == 64 * 4000
    assert params.train_sample_size(5000, 40) == 5000  # small galleries train on everything
    assert params.train_sample_size(50_000, 10) == 39 * 256  # PQ needs 39 points per code


def test_ivf_trains_on_a_sample_and_still_indexes_everything() -> None:
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((4000, 16)).astype(np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    params = FaissParams(ivf_nlist=20, train_points_per_list=40, pq_m=4, pq_nbits=4)
    assert params.train_sample_size(4000, 20) == 800
    ann = AnnIndex.build("ivf_sq8", 16, params, np.arange(4000, dtype=np.int64), xb)
    assert ann.index.is_trained and ann.index.ntotal == 4000
