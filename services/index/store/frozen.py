"""What a snapshot writes, as it was at one instant, readable while writes go on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.index.store.ann import AnnIndex
from services.index.store.protocol import Ids, Vectors
from services.index.store.vectorstore import VectorStore

BLOCK_BYTES = 32 << 20  # rows copied per read lock: ~10 ms of memcpy, ~11k rows at 768-d


def block_rows(dim: int) -> int:
    """Rows of `dim` float32 plus an int64 id in one block of about `BLOCK_BYTES`."""
    return max(1, BLOCK_BYTES // (4 * dim + 8))


@dataclass
class FrozenState:
    """`FaissIndex.freeze()`: the meta, the store's first `rows` rows through `read_rows`
    (start, stop) -> ((m,) ids, (m, dim) vectors of `dtype`), and the approximate structure, which
    receives no write until `FaissIndex.thaw()` (writes meanwhile are queued)."""

    meta: dict[str, Any]
    rows: int
    dim: int | None
    read_rows: Callable[[int, int], tuple[Ids, Vectors]]
    ann: AnnIndex | None
    store: VectorStore | None
    dtype: str = "<f4"  # of the vectors `read_rows` returns (a disk store: "<f2")
    # {tag: (m,) ascending ids} at the freeze instant (arrays no later write changes).
    tags: dict[str, Ids] = field(default_factory=dict)
