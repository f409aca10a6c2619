"""IVF training sample: bounded per list, never below what PQ codebooks need; the automatic
sizes (lists, probes, candidates) follow the gallery."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.index.config import IndexSettings
from services.index.store.ann import AnnIndex
from services.index.store.errors import InvalidIndexType
from services.index.store.factory import open_generation
from services.index.store.params import FaissParams
from tests.index.data import gaussian_mixture


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


def test_automatic_sizes_follow_the_gallery() -> None:
    """The rule of docs/index.md: the measured settings at 1M and 10M, 4 sqrt(n) lists."""
    auto = FaissParams()
    assert auto.nlist_for(100_000) == 1264 and auto.nlist_for(1_000_000) == 4000
    assert auto.nlist_for(10_000_000) == 4096  # capped: the 10M build measured
    assert auto.nlist_for(2000) == 51  # 39 points per list at least
    assert [auto.nprobe_for(nlist) for nlist in (20, 1264, 2048, 4096)] == [20, 32, 32, 64]
    assert auto.rerank_for("ivf_pq", 1_000_000) == 64
    assert auto.rerank_for("ivf_pq", 10_000_000) == 128
    assert auto.rerank_for("ivf_sq8", 10_000_000) == auto.rerank_factor == 4
    assert auto.candidates("ivf_pq", 10, 10_000_000) == 1280
    assert auto.candidates("ivf_pq", 200, 10_000_000) == auto.rerank_max

    fixed = auto.replace({"ivf_nprobe": 12, "pq_rerank_factor": 16})
    assert fixed.nprobe_for(4096) == 12 and fixed.rerank_for("ivf_pq", 10_000_000) == 16
    assert fixed.replace({"ivf_nprobe": 0, "pq_rerank_factor": 0}) == auto  # back to auto
    with pytest.raises(InvalidIndexType):
        auto.replace({"rerank_factor": 0})


def test_searches_use_the_automatic_sizes(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """An IVF-PQ index on default search settings probes and re-ranks what the rule says,
    and its stats show the values in effect."""
    import faiss

    from services.index.store import ann as ann_module

    probes: list[int] = []
    fetched: list[int] = []
    real_params, real_search = faiss.SearchParametersIVF, AnnIndex.search

    def params_spy() -> Any:
        made = real_params()
        probes.append(made)
        return made

    def search_spy(self: AnnIndex, xq: np.ndarray, k: int, *args: Any, **kwargs: Any
                   ) -> np.ndarray:
        fetched.append(k)
        return real_search(self, xq, k, *args, **kwargs)

    settings = IndexSettings(type="ivf_pq", train_min=0, ivf_nlist=0, pq_m=16, pq_nbits=6,
                             filter_exact_max=100, snapshot_every=1000000)
    assert settings.ivf_nprobe == 0 and settings.pq_rerank_factor == 0  # the defaults
    xb = gaussian_mixture(4000, 32, seed=3)
    index = open_generation(settings, tmp_path / "gen")
    try:
        index.upsert(np.arange(4000, dtype=np.int64), xb, "m")
        monkeypatch.setattr(ann_module.faiss, "SearchParametersIVF", params_spy)
        monkeypatch.setattr(AnnIndex, "search", search_spy)
        _, found = index.search(xb[:3], 5)
        assert found[:, 0].tolist() == [0, 1, 2]
        nlist = FaissParams().nlist_for(4000)
        assert [p.nprobe for p in probes] == [min(32, nlist)]
        assert fetched == [5 * 64]
        assert index.stats().params["in_effect"] == {
            "nlist": nlist, "nprobe": min(32, nlist), "rerank_factor": 64}
    finally:
        index.close(snapshot=False)
