"""Tuning parameters of the Faiss index types (from settings; overridable per rebuild)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from services.index.store.errors import InvalidIndexType
from services.index.store.exact import ExactEngine
from services.index.store.protocol import INDEX_TYPES

# Automatic IVF sizes, from bench/index_scale.py on embedding-like 768-d vectors (IVF-PQ 64 x
# 8 bits re-ranked from float16 rows; docs/index.md "Defaults that follow the gallery"):
# 1M vectors in 2048 lists reach recall@10 0.973 at nprobe 32 and 64 candidates per result;
# 10M in 4096 lists 0.914 with the same and 0.954 at nprobe 64 and 128.
AUTO_NLIST_MAX = 4096  # past it k-means and assigning every vector cost more than they give
AUTO_PROBE_SHARE = 64  # probe one list in 64 ...
AUTO_NPROBE_MIN = 32  # ... and never fewer than this many
AUTO_PQ_RERANK = 64  # IVF-PQ candidates per result up to AUTO_RERANK_BASE vectors, then
AUTO_RERANK_BASE = 2_500_000  # growing as the square root of the gallery (128 at 10M)
# Parameters where 0 means "chosen from the gallery" (train_min 0: train at once).
ZERO_ALLOWED = ("ivf_nlist", "ivf_nprobe", "pq_rerank_factor", "train_min")


@dataclass(frozen=True)
class FaissParams:
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 256
    ivf_nlist: int = 0  # 0: chosen from the gallery size at training time
    ivf_nprobe: int = 0  # 0: one list in 64, at least 32 (`nprobe_for`)
    pq_m: int = 64
    pq_nbits: int = 8
    train_min: int = 10000  # IVF types search exactly until this many vectors exist
    rerank_factor: int = 4  # approximate candidates per result, re-scored exactly
    # The same for ivf_pq, whose codes are the coarsest: on embedding-like data at 1M its
    # own top-40 holds 76% of the true top-10, its top-640 97% (bench/index_scale.py).
    # 0: 64, growing with the gallery past 2.5M vectors (`rerank_for`).
    pq_rerank_factor: int = 0
    rerank_max: int = 8192  # candidates re-scored per query at most (large k: the gateway's)
    filter_exact_max: int = 20000  # allowed sets up to this size are brute-forced
    compact_fraction: float = 0.2  # tombstones above this share of the graph: rebuild
    retrain_growth: float = 4.0  # auto-nlist IVF retrains when the gallery grows this much
    # IVF k-means (and PQ codebooks) train on a seeded sample of this many vectors per list:
    # training on all of a large gallery costs n * nlist * dim per iteration for no gain.
    train_points_per_list: int = 64
    exact_engine: ExactEngine = "numpy"

    def replace(self, overrides: dict[str, Any]) -> FaissParams:
        """A copy with `overrides`; unknown keys or wrong values raise `InvalidIndexType`."""
        names = {f.name: f for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise InvalidIndexType(f"unknown index parameters: {', '.join(unknown)}",
                                   detail={"allowed": sorted(names)})
        clean: dict[str, Any] = {}
        for key, value in overrides.items():
            current = getattr(self, key)
            if key == "exact_engine":
                if value not in ("numpy", "faiss"):
                    raise InvalidIndexType("exact_engine must be numpy or faiss")
                clean[key] = value
                continue
            try:
                cast = type(current)(value)
            except (TypeError, ValueError) as exc:
                raise InvalidIndexType(f"{key} must be a number") from exc
            if isinstance(value, bool) or cast < 0 or (cast == 0 and key not in ZERO_ALLOWED):
                raise InvalidIndexType(f"{key} must be positive")
            clean[key] = cast
        return dataclasses.replace(self, **clean)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def rerank_for(self, index_type: str, n: int) -> int:
        """Approximate candidates per result for an index of n vectors."""
        if index_type != "ivf_pq":
            return self.rerank_factor
        if self.pq_rerank_factor:
            return self.pq_rerank_factor
        return round(AUTO_PQ_RERANK * max(1.0, math.sqrt(n / AUTO_RERANK_BASE)))

    def candidates(self, index_type: str, k: int, n: int) -> int:
        """Approximate candidates fetched for k results (re-scored exactly) among n vectors."""
        return max(k, min(k * self.rerank_for(index_type, n), self.rerank_max))

    def nlist_for(self, n: int) -> int:
        """Inverted lists for n training vectors: about 4 sqrt(n), at least 39 points each,
        at most AUTO_NLIST_MAX."""
        if self.ivf_nlist:
            return self.ivf_nlist
        return max(1, min(int(4 * math.sqrt(n)), n // 39, AUTO_NLIST_MAX))

    def nprobe_for(self, nlist: int) -> int:
        """Lists an IVF search probes among nlist."""
        return min(self.ivf_nprobe or max(AUTO_NPROBE_MIN, nlist // AUTO_PROBE_SHARE), nlist)

    def in_effect(self, index_type: str, n: int, nlist: int) -> dict[str, int]:
        """The automatic parameters as an index of n vectors (nlist lists) uses them."""
        if index_type not in ("ivf_sq8", "ivf_pq"):
            return {}
        return {"nlist": nlist, "nprobe": self.nprobe_for(nlist),
                "rerank_factor": self.rerank_for(index_type, n)}

    def train_sample_size(self, n: int, nlist: int) -> int:
        """How many of n vectors IVF training uses (PQ codebooks need 39 x 2^nbits at least)."""
        return min(n, max(self.train_points_per_list * nlist, 39 * 2**self.pq_nbits))

    def train_size(self, index_type: str) -> int:
        """How many vectors an index type needs before it is trained (0: never trained)."""
        if index_type not in ("ivf_sq8", "ivf_pq"):
            return 0
        floor = 39 * self.ivf_nlist if self.ivf_nlist else 39
        if index_type == "ivf_pq":
            floor = max(floor, 1 << self.pq_nbits)
        return max(self.train_min, floor)


def check_type(index_type: str) -> str:
    if index_type not in INDEX_TYPES:
        raise InvalidIndexType(f"unknown index type {index_type!r}",
                               detail={"allowed": list(INDEX_TYPES)})
    return index_type
