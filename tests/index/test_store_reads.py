"""Re-ranking's gather from the disk store through a mapping equals the plain reads, while
the store grows (the file is mapped again), rows are replaced and removed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.index.store.vectorstore import REGION, VectorStore


def test_mapped_take_equals_pread_through_growth_and_writes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    store = VectorStore(8, capacity=4, directory=tmp_path, dtype="float16", reads="mmap")
    plain = VectorStore(8, capacity=4, directory=tmp_path, dtype="float16", reads="pread")
    for step in range(30):
        ids = rng.choice(500, size=rng.integers(1, 40), replace=False).astype(np.int64)
        x = rng.standard_normal((len(ids), 8)).astype(np.float32)
        for s in (store, plain):
            s.upsert(ids, x)
            if step % 4 == 3:
                s.remove(ids[: len(ids) // 2])
        rows = rng.integers(0, len(store), size=64)
        got = store.take(rows)
        assert store._file is not None
        np.testing.assert_array_equal(got, store._file.take_pread(rows).astype(np.float32))
        np.testing.assert_array_equal(got, plain.take(rows))
    store.close()
    plain.close()


def _mapped_rss(store: VectorStore) -> int:
    """Resident bytes of the store file's mapping in this process (/proc/self/smaps)."""
    assert store._file is not None
    name = Path(f"/proc/self/fd/{store._file.fd}").readlink().name.removesuffix(" (deleted)")
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:  # a mapping's header line
            inside = name in line
        elif inside and line.startswith("Rss:"):
            total += int(head[1]) * 1024
    return total


def test_mapped_pages_stay_within_the_budget(tmp_path: Path) -> None:
    """Gathers all over a file much larger than the budget: the mapping's resident pages
    stay within the budget (a fault maps a row's whole 2 MB region at most), the rows read
    are still right; with no budget they grow to the whole file."""
    rng = np.random.default_rng(1)
    dim, n, budget = 256, 100_000, 4 * REGION  # 512-byte rows: a 51 MB file, 25 regions
    x = rng.standard_normal((n, dim), dtype=np.float32)
    ids = np.arange(n, dtype=np.int64)
    bounded = VectorStore(dim, capacity=n, directory=tmp_path, reads="mmap", map_budget=budget)
    unbounded = VectorStore(dim, capacity=n, directory=tmp_path, reads="mmap",
                            map_budget=1 << 40)
    peaks = []
    for store in (bounded, unbounded):
        store.upsert(ids, x)
        peak = 0
        for _ in range(300):
            rows = rng.integers(0, n, size=2)
            np.testing.assert_array_equal(store.take(rows), x[rows].astype(np.float16)
                                          .astype(np.float32))
            peak = max(peak, _mapped_rss(store))
        peaks.append(peak)
    assert 0 < peaks[0] <= budget, peaks
    assert peaks[1] > 2 * budget, peaks  # what the budget prevents
    bounded.close()
    unbounded.close()


def test_gathers_over_the_same_rows_keep_their_pages(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A region gathered again since the last drop counts once: gathers that stay within
    the budget's worth of the file never drop the pages (a 1M gallery's whole file fits the
    default budget), gathers all over a larger file still do."""
    rng = np.random.default_rng(2)
    dim, n, budget = 256, 100_000, 8 * REGION  # 512-byte rows: 4096 per region
    x = rng.standard_normal((n, dim), dtype=np.float32)
    store = VectorStore(dim, capacity=n, directory=tmp_path, reads="mmap", map_budget=budget)
    store.upsert(np.arange(n, dtype=np.int64), x)
    rows_file = store._file
    assert rows_file is not None
    drops: list[int] = []
    real_drop = rows_file.unmap_pages

    def counted_drop() -> None:
        drops.append(1)
        real_drop()

    monkeypatch.setattr(rows_file, "unmap_pages", counted_drop)
    hot = 6 * REGION // (dim * 2)  # the rows of 6 regions, within the budget of 8
    for _ in range(200):
        rows = rng.integers(0, hot, size=64)
        np.testing.assert_array_equal(store.take(rows), x[rows].astype(np.float16)
                                      .astype(np.float32))
    assert drops == []
    for _ in range(20):
        store.take(rng.integers(0, n, size=4))
    assert drops and _mapped_rss(store) <= budget
    store.close()
