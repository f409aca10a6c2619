"""Index fixtures: every backend and index type behind the same `VectorIndex` factory.

Filling and training an index is most of the suite's cost, so each backend is filled once
per module (`filled_root`): tests that only read share it (`filled`), tests that write open
their own copy of its files (`filled_copy`: a snapshot load, no retraining; Milvus, whose
file milvus-lite keeps open, is filled afresh instead).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.index.config import IndexSettings
from services.index.store.factory import open_generation
from services.index.store.protocol import VectorIndex
from tests.helpers.requirements import missing
from tests.index.data import gaussian_mixture, queries_near

FAISS_TYPES = ["flat", "hnsw", "ivf_sq8", "ivf_pq"]
# Types whose vectors live in the disk store by default (`vector_store: auto`), as float16.
DISK_TYPES = ("ivf_sq8", "ivf_pq")
BACKENDS = [*FAISS_TYPES, "milvus"]

# Small-gallery settings, the documented ones for this suite: IVF trains at 1248 vectors
# (39 per list) with 32 lists, probing 12; PQ of 16 x 6 bits on 32-d (2-d sub-vectors);
# allowed sets above 300 ids take the approximate filtered path.
SMALL: dict[str, Any] = {
    "train_min": 1000, "ivf_nlist": 32, "ivf_nprobe": 12, "pq_m": 16, "pq_nbits": 6,
    "filter_exact_max": 300, "hnsw_m": 16, "hnsw_ef_construction": 80, "hnsw_ef_search": 64,
    "snapshot_every": 1000000, "maintenance_interval_s": 0.1,
}

N, D, K = 2000, 32, 10
MODEL = "dinov2_vits14:test"
GEN = Path("index") / "gen-000001"


def stored(kind: str, x: np.ndarray) -> np.ndarray:
    """`x` as the index keeps it: rounded to float16 for the types kept on disk."""
    x = np.asarray(x, np.float32)
    return x.astype(np.float16).astype(np.float32) if kind in DISK_TYPES else x


@pytest.fixture(scope="session", autouse=True)
def faiss_one_thread() -> Iterator[None]:
    """One OpenMP thread: on 2 shared cores Faiss's spinning threads slow training 10x."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


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


@pytest.fixture(scope="module", params=BACKENDS)
def kind(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "milvus":
        reason = milvus_available(tmp_path_factory.mktemp("probe"))
        if reason:
            missing("milvus-lite", reason)
    return str(request.param)


OpenIndex = Callable[..., VectorIndex]


@dataclass
class Data:
    """(N, D) gallery `xb` with catalog ids `ids` (not row numbers), (50, D) queries `xq`."""

    xb: np.ndarray
    ids: np.ndarray
    xq: np.ndarray


@pytest.fixture(scope="session")
def data() -> Data:
    xb = gaussian_mixture(N, D, seed=0)
    return Data(xb=xb, ids=np.arange(N, dtype=np.int64) * 3 + 1000, xq=queries_near(xb, 50))


def fill(index: VectorIndex, data: Data) -> VectorIndex:
    for start in range(0, N, 500):  # several batches, as the workers send them
        index.upsert(data.ids[start : start + 500], data.xb[start : start + 500], MODEL)
    return index


@contextlib.contextmanager
def _opener(kind: str, root: Path) -> Iterator[OpenIndex]:
    opened: list[VectorIndex] = []

    def make(**overrides: Any) -> VectorIndex:
        index = open_generation(settings_for(kind, **overrides), root / GEN)
        opened.append(index)
        return index

    try:
        yield make
    finally:
        for index in opened:
            with contextlib.suppress(Exception):
                index.close(snapshot=False)


@pytest.fixture
def open_index(kind: str, tmp_path: Path) -> Iterator[OpenIndex]:
    """open_index(**settings overrides) -> the index of this backend in tmp (reopenable)."""
    with _opener(kind, tmp_path) as make:
        yield make


@pytest.fixture(scope="module")
def filled_root(kind: str, data: Data, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[tuple[Path, VectorIndex]]:
    """(directory, index): the backend filled through upserts, snapshotted. Read only."""
    root = tmp_path_factory.mktemp(f"filled-{kind}")
    with _opener(kind, root) as make:
        index = fill(make(), data)
        index.snapshot()
        yield root, index


@pytest.fixture
def filled(filled_root: tuple[Path, VectorIndex]) -> VectorIndex:
    """The shared filled index, for tests that do not write."""
    return filled_root[1]


@pytest.fixture
def filled_copy(kind: str, data: Data, open_index: OpenIndex, tmp_path: Path,
                request: pytest.FixtureRequest) -> VectorIndex:
    """A filled index of this test's own (for tests that write): a copy of the shared
    one's files, opened from its snapshot (Milvus: filled afresh)."""
    if kind == "milvus":
        return fill(open_index(), data)
    root: Path = request.getfixturevalue("filled_root")[0]
    shutil.copytree(root / GEN, tmp_path / GEN)
    return open_index()
