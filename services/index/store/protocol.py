"""The interface every vector index backend implements (Faiss, Milvus)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

IndexType = Literal["flat", "hnsw", "ivf_sq8", "ivf_pq"]
INDEX_TYPES: tuple[str, ...] = ("flat", "hnsw", "ivf_sq8", "ivf_pq")

Ids = NDArray[np.int64]
Vectors = NDArray[np.float32]


@dataclass
class IndexStats:
    """What an index holds. `bytes` is the memory (RAM) of vectors, ids and the search
    structure; `disk_bytes` the working file of vectors kept on disk (0: all in RAM)."""

    count: int
    dim: int | None
    model: str | None
    type: str
    tombstones: int = 0
    bytes: int = 0
    disk_bytes: int = 0
    trained: bool = True
    params: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class VectorIndex(Protocol):
    """A set of (id, vector) pairs searched by inner product.

    Ids are int64 catalog ids, unique in the index. The index records the model id and the
    dimension of its vectors; an empty index adopts the first ones it is given and refuses
    others (`ModelMismatch`, `DimensionMismatch`). Implementations are thread-safe.
    """

    @property
    def model(self) -> str | None: ...

    @property
    def dim(self) -> int | None: ...

    @property
    def count(self) -> int: ...

    def check(self, model: str | None, dim: int) -> None:
        """Raise if vectors of `model` and `dim` cannot go into (or query) this index."""
        ...

    def upsert(self, ids: Ids, vectors: Vectors, model: str) -> None:
        """(n,) ids, (n, d) vectors: insert, replacing the vector of an existing id."""
        ...

    def remove(self, ids: Ids) -> int:
        """Remove the ids present; absent ids are ignored. Returns how many were removed."""
        ...

    def search(
        self, queries: Vectors, k: int, allowed_ids: Ids | None = None,
        tags: list[str] | None = None,
    ) -> tuple[NDArray[np.float32], Ids]:
        """(nq, d) queries -> D (nq, k) inner products best first, I (nq, k) ids (-1 pads
        only when fewer than k live vectors, or allowed ids, exist). `tags`: only ids
        carrying every one of them (the tags the index holds, `set_tags`)."""
        ...

    def set_tags(self, ids: Ids, tags: list[list[str]]) -> None:
        """Replace the tags of each id (tags[i] for ids[i]; [] clears). Durable like
        vectors; `remove` drops an id's tags with its vector."""
        ...

    def tags_of(self, ids: Ids) -> list[list[str]]:
        """The tags held for each of `ids` (sorted; [] for none)."""
        ...

    def tag_counts(self) -> dict[str, int]:
        """Ids per tag (tags with at least one id)."""
        ...

    def get(self, ids: Ids) -> tuple[Ids, Vectors]:
        """The ids found (in the order given) and their (m, d) vectors."""
        ...

    def ids(self, after: int, limit: int) -> Ids:
        """Ascending ids greater than `after`, at most `limit` of them."""
        ...

    def stats(self) -> IndexStats: ...

    def rebuild(self, index_type: str, params: dict[str, Any]) -> None:
        """Rebuild the search structure as `index_type` over the same vectors."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """Persist the whole state now (Faiss: an atomic snapshot; Milvus: a flush)."""
        ...

    def start(self) -> None:
        """Start background maintenance (snapshots, compaction)."""
        ...

    def close(self, snapshot: bool = True) -> None:
        """Stop; with `snapshot`, persist first (a clean shutdown)."""
        ...
