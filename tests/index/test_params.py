"""IVF training sample: bounded per list, never below what PQ codebooks need."""

from __future__ import annotations

import numpy as np
import pytest

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


class _CountingRows:
    """A `RowSource` over arrays that records what the build read."""

    def __init__(self, xb: np.ndarray) -> None:
        self.xb = xb
        self.blocks: list[int] = []
        self.sampled: list[int] = []

    def __len__(self) -> int:
        return len(self.xb)

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        self.blocks.append(min(stop, len(self.xb)) - start)
        return np.arange(start, min(stop, len(self.xb)), dtype=np.int64), self.xb[start:stop]

    def take(self, rows: np.ndarray) -> np.ndarray:
        self.sampled.append(len(rows))
        return self.xb[rows]


def test_build_reads_a_sample_then_bounded_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.index.store import ann as ann_module

    monkeypatch.setattr(ann_module, "ADD_BLOCK_BYTES", 16 * 4 * 500)  # 500 rows of 16-d
    rng = np.random.default_rng(1)
    xb = rng.standard_normal((4000, 16)).astype(np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    params = FaissParams(ivf_nlist=20, train_points_per_list=40, pq_nbits=4)
    source = _CountingRows(xb)
    progress: list[tuple[int, int]] = []
    ann = AnnIndex.build_from("ivf_sq8", 16, params, source,
                              lambda done, total: progress.append((done, total)))
    assert source.sampled == [800]  # one training sample, not the gallery
    assert max(source.blocks) == 500 and sum(source.blocks) == 4000
    assert progress[-1] == (4000, 4000) and len(progress) == 8
    assert ann.index.ntotal == 4000 and ann.trained_at == 4000
    _, found = ann.index.search(xb[:5], 1)
    assert found[:, 0].tolist() == [0, 1, 2, 3, 4]
