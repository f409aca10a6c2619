"""Re-ranking's gather from the disk store through a mapping equals the plain reads, while
the store grows (the file is mapped again), rows are replaced and removed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from services.index.store.vectorstore import VectorStore


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
