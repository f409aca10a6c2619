"""Snapshots and rebuilds do not stop writes: a write issued while a snapshot is being
written is acknowledged before the snapshot finishes, searches see it, the snapshot holds
exactly the state of its instant, and snapshot + log recover every write exactly; writes
during a rebuild all reach the rebuilt index."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from services.index.store import snapshot as snap
from services.index.store.durable import DurableIndex
from services.index.store.protocol import VectorIndex
from services.index.store.vectorstore import VectorStore
from tests.index.conftest import FAISS_TYPES, GEN, MODEL, Data, OpenIndex, stored
from tests.index.data import gaussian_mixture

WAIT = 60.0  # seconds before a stuck test fails instead of hanging


@pytest.fixture(scope="module", params=FAISS_TYPES)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("on_disk", [False, True], ids=["memory", "disk"])
def test_frozen_rows_stay_as_they_were_while_the_store_changes(on_disk: bool,
                                                                tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    store = VectorStore(4, capacity=16, directory=tmp_path if on_disk else None)
    store.upsert(np.arange(40, dtype=np.int64), rng.standard_normal((40, 4)).astype(np.float32))
    before_ids, before_vecs = store.ids.copy(), store.read(0, 40).astype(store.dtype)
    store.freeze()
    for _ in range(300):  # replaces, removes (rows move), refills, growth past capacity
        ids = rng.integers(0, 120, rng.integers(1, 6)).astype(np.int64)
        if rng.random() < 0.5:
            ids = np.unique(ids)
            store.upsert(ids, rng.standard_normal((len(ids), 4)).astype(np.float32))
        else:
            store.remove(ids)
    blocks = [store.frozen_rows(a, a + 7) for a in range(0, 40, 7)]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in blocks]), before_ids)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in blocks]), before_vecs)
    store.thaw()
    with pytest.raises(RuntimeError):
        store.frozen_rows(0, 1)


def _vectors(n: int, seed: int) -> np.ndarray:
    return gaussian_mixture(n, 32, seed=seed)


def test_writes_go_on_while_a_snapshot_is_written(filled_copy: DurableIndex, kind: str,
                                                  open_index: OpenIndex, data: Data,
                                                  tmp_path: Path) -> None:
    index = filled_copy
    expected = {int(i): v for i, v in zip(data.ids.tolist(), data.xb, strict=True)}
    at_snapshot = dict(expected)

    started, release = threading.Event(), threading.Event()

    def slow_write(stage: str) -> None:  # the snapshot stops after its first block of rows
        started.set()
        assert release.wait(WAIT), "the test never released the snapshot"

    index.snapshot_progress = slow_write
    result: dict[str, object] = {}
    snapshotter = threading.Thread(target=lambda: result.update(index.snapshot()))
    snapshotter.start()
    assert started.wait(WAIT), "the snapshot never started writing"

    new_ids = np.arange(900000, 900040, dtype=np.int64)
    new_vecs = _vectors(40, seed=11)
    replaced = data.ids[5:6]
    replacement = _vectors(1, seed=12)
    gone = data.ids[10:30]

    def write() -> None:
        index.upsert(new_ids, new_vecs, MODEL)
        index.upsert(replaced, replacement, MODEL)
        index.remove(gone)

    writer = threading.Thread(target=write)
    writer.start()
    writer.join(WAIT)
    try:
        assert not writer.is_alive(), "a write waited for the snapshot"
        assert snapshotter.is_alive(), "the snapshot finished before the writes"
        expected.update(zip(new_ids.tolist(), new_vecs, strict=True))
        expected[int(replaced[0])] = replacement[0]
        for i in gone.tolist():
            expected.pop(i)
        # Searches during the snapshot see the writes (approximate types: the ids upserted
        # meanwhile are searched beside the frozen structure).
        _, I = index.search(new_vecs[:10], 1)
        assert I[:, 0].tolist() == new_ids[:10].tolist()
        _, I = index.search(replacement, 1)
        assert I[0, 0] == replaced[0]
        _, I = index.search(data.xb[10:30], 10)
        assert not np.isin(I, gone).any()
        _, I = index.search(new_vecs[:1], 5, allowed_ids=np.concatenate([data.ids[::2],
                                                                         new_ids[:1]]))
        assert I[0, 0] == new_ids[0] and np.isin(I[0], np.concatenate([data.ids[::2],
                                                                       new_ids[:1]])).all()
    finally:
        release.set()
        snapshotter.join(WAIT)
    assert not snapshotter.is_alive()

    # The snapshot holds exactly the state of its instant, none of the writes made during it.
    seq, state = snap.load_latest(tmp_path / GEN)  # type: ignore[misc]
    assert seq == result["seq"]
    assert sorted(state["ids"].tolist()) == sorted(at_snapshot)
    row = {int(i): r for r, i in enumerate(state["ids"].tolist())}
    np.testing.assert_array_equal(state["vectors"][row[int(replaced[0])]],
                                  stored(kind, at_snapshot[int(replaced[0])]))

    # After the snapshot the approximate structure caught up with the queued writes.
    _, I = index.search(new_vecs[10:20], 1)
    assert I[:, 0].tolist() == new_ids[10:20].tolist()

    # More writes, then a crash (the index is abandoned, not closed): snapshot + log.
    later = _vectors(1, seed=13)
    index.remove(new_ids[:5])
    index.upsert(data.ids[40:41], later, MODEL)
    for i in new_ids[:5].tolist():
        expected.pop(i)
    expected[int(data.ids[40])] = later[0]
    again = open_index()
    assert isinstance(again, DurableIndex) and again._snapshot_seq == result["seq"]
    _assert_holds(again, expected, kind)


def _assert_holds(index: VectorIndex, expected: dict[int, np.ndarray], kind: str) -> None:
    """Exactly the ids and vectors of `expected`, each found by its own vector."""
    assert index.count == len(expected)
    ids = index.ids(-1, 10 * len(expected))
    assert ids.tolist() == sorted(expected)
    found, vectors = index.get(ids)
    np.testing.assert_array_equal(vectors, stored(kind, np.stack([expected[i]
                                                                  for i in found.tolist()])))
    # k=5: PQ codes are too coarse to put a random vector among its own first 4 candidates
    # (k * rerank_factor); among 20 it is, and the exact re-ranking then puts it first.
    _, I = index.search(vectors[-20:], 5)
    assert I[:, 0].tolist() == found[-20:].tolist()


class _Died(Exception):
    pass


def test_a_crash_while_a_snapshot_is_written_loses_nothing(filled_copy: DurableIndex, kind: str,
                                                           open_index: OpenIndex, data: Data,
                                                           tmp_path: Path) -> None:
    index = filled_copy
    expected = {int(i): v for i, v in zip(data.ids.tolist(), data.xb, strict=True)}
    new_ids, new_vecs = np.arange(800000, 800030, dtype=np.int64), _vectors(30, seed=21)
    index.upsert(new_ids, new_vecs, MODEL)
    index.remove(data.ids[:10])

    def die(stage: str) -> None:
        raise _Died(stage)

    index.snapshot_progress = die
    with pytest.raises(_Died):
        index.snapshot()
    assert list((tmp_path / GEN).glob(".tmp-snap-*")), "no half-written snapshot to recover"
    index.upsert(data.ids[20:21], new_vecs[:1] * -1, MODEL)  # after the failed snapshot
    expected.update(zip(new_ids.tolist(), new_vecs, strict=True))
    for i in data.ids[:10].tolist():
        expected.pop(i)
    expected[int(data.ids[20])] = -new_vecs[0]
    _assert_holds(index, expected, kind)  # the failed snapshot left the live index whole

    again = open_index()
    assert not list((tmp_path / GEN).glob(".tmp-snap-*"))
    _assert_holds(again, expected, kind)


def test_writes_during_a_rebuild_reach_the_rebuilt_index(filled_copy: DurableIndex,
                                                         kind: str, data: Data) -> None:
    index = filled_copy
    expected = {int(i): v for i, v in zip(data.ids.tolist(), data.xb, strict=True)}
    done = threading.Event()
    written: list[int] = []
    vecs = _vectors(2000, seed=31)

    def write() -> None:  # until the rebuild is over, at least a few writes
        n = 0
        while (not done.is_set() or n < 5) and n < len(vecs):
            index.upsert(np.array([700000 + n]), vecs[n : n + 1], MODEL)
            index.remove(data.ids[n : n + 1])
            written.append(n)
            n += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        index.rebuild("hnsw" if kind == "flat" else kind, {})
    finally:
        done.set()
        writer.join(WAIT)
    for n in written:
        expected[700000 + n] = vecs[n]
        expected.pop(int(data.ids[n]))
    _assert_holds(index, expected, kind)
    _, I = index.search(vecs[written[-5:]], 5)  # found through the rebuilt structure
    assert I[:, 0].tolist() == [700000 + n for n in written[-5:]]


def _cached_bytes(path: Path) -> int:
    """Bytes of `path` in the page cache (util-linux `fincore`)."""
    import shutil
    import subprocess

    from tests.helpers.requirements import require

    require("fincore", shutil.which("fincore") is not None,
            "apt-get install util-linux-extra")
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                         check=True, capture_output=True, text=True).stdout
    return int(out.split()[0])


def test_snapshot_leaves_its_rows_out_of_the_page_cache(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot's vectors are synced and dropped from the page cache as they are written:
    at 10M they are 15 GB that would evict the vector file's rows searches re-rank."""
    from services.index.store.faiss_backend import FaissIndex

    monkeypatch.setattr(snap, "SYNC_BYTES", 1 << 20)
    rng = np.random.default_rng(3)
    index = FaissIndex("flat", store_dir=tmp_path / "store")
    index.upsert(np.arange(40_000, dtype=np.int64),
                 rng.standard_normal((40_000, 128), dtype=np.float32), MODEL)  # 10 MB
    view = index.freeze()
    try:
        path = snap.write_snapshot(tmp_path, 1, view)
    finally:
        index.thaw(view)
    size = (path / "vectors.npy").stat().st_size
    assert size > 10_000_000
    assert _cached_bytes(path / "vectors.npy") <= size // 4
    # Loading it (a start) reads the rows once and leaves them out of the cache too.
    with open(path / "vectors.npy", "rb") as handle:
        handle.read()  # everything cached now
    assert _cached_bytes(path / "vectors.npy") >= size // 2
    loaded = snap.load_latest(tmp_path)
    assert loaded is not None and loaded[0] == 1
    again = FaissIndex("flat", store_dir=tmp_path / "again")
    again.import_state(loaded[1])
    assert again.count == 40_000
    assert _cached_bytes(path / "vectors.npy") <= size // 4
    index.close()
    again.close()
