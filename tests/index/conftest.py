"""Index fixtures: every backend and index type behind the same `VectorIndex` factory."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.index.config import IndexSettings
from services.index.store.factory import open_generation
from services.index.store.protocol import VectorIndex

FAISS_TYPES = ["flat", "hnsw", "ivf_sq8", "ivf_pq"]
BACKENDS = [*FAISS_TYPES, "milvus"]

# Small-gallery settings: IVF trains at 1000 vectors with 32 lists; PQ of 16 x 6 bits on
# 64-d; allowed sets above 300 ids take the approximate filtered path.
SMALL: dict[str, Any] = {
    "train_min": 1000, "ivf_nlist": 32, "ivf_nprobe": 12, "pq_m": 16, "pq_nbits": 6,
    "filter_exact_max": 300, "hnsw_m": 16, "hnsw_ef_construction": 80, "hnsw_ef_search": 64,
    "snapshot_every": 1000000, "maintenance_interval_s": 0.1,
}


def milvus_available(tmp: Path) -> str | None:
    """None when milvus-lite starts here, else the reason it cannot."""
    try:
        from pymilvus import MilvusClient

        client = MilvusClient(str(tmp / "probe.db"))
        client.close()
    except Exception as exc:
        return f"milvus-lite cannot start here: {exc}"
    return None


def settings_for(kind: str, **overrides: Any) -> IndexSettings:
    backend = "milvus" if kind == "milvus" else "faiss"
    index_type = "flat" if kind == "milvus" else kind
    return IndexSettings(backend=backend, type=index_type, **{**SMALL, **overrides})


@pytest.fixture(params=BACKENDS)
def kind(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "milvus":
        reason = milvus_available(tmp_path)
        if reason:
            pytest.skip(reason)
    return str(request.param)


OpenIndex = Callable[..., VectorIndex]


@pytest.fixture
def open_index(kind: str, tmp_path: Path) -> Iterator[OpenIndex]:
    """open_index(**settings overrides) -> the index of this backend in tmp (reopenable)."""
    opened: list[VectorIndex] = []

    def make(**overrides: Any) -> VectorIndex:
        settings = settings_for(kind, **overrides)
        index = open_generation(settings, tmp_path / "index" / "gen-000001")
        opened.append(index)
        return index

    yield make
    for index in opened:
        with contextlib.suppress(Exception):
            index.close(snapshot=False)
