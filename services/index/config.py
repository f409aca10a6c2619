"""Settings of the index service: section `index:` of config.yaml, env IMGSEARCH_INDEX_*."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from services.common.peers import port_field
from services.common.settings import SectionSettings, common_settings
from services.common.vocabulary import INDEX_MAX_K
from services.index.store.vectorstore import DEFAULT_MAP_BUDGET


class IndexSettings(SectionSettings, section="index"):
    port: int = port_field("index")
    backend: Literal["faiss", "milvus"] = "faiss"
    # flat (exact inner product) | hnsw | ivf_sq8 | ivf_pq
    type: Literal["flat", "hnsw", "ivf_sq8", "ivf_pq"] = "flat"
    dir: str = ""  # empty: $data_dir/index
    # Where the vectors live (exact re-ranking, get, rebuilds read them): memory (float32),
    # disk (a working file of `vector_dtype` rows beside the index, only the codes in RAM),
    # auto (disk for ivf_sq8 / ivf_pq, memory for flat / hnsw). Chosen when the index opens.
    vector_store: Literal["auto", "memory", "disk"] = "auto"
    vector_dtype: Literal["float16", "float32"] = "float16"
    # How re-ranking gathers rows from the disk store: mmap (a read-only mapping, one
    # vectorised gather) | pread (a read per run of rows).
    vector_reads: Literal["mmap", "pread"] = "mmap"
    # With mmap: MB of the file's pages re-ranking keeps mapped into the process at most
    # (then dropped from it, kept in the page cache): bounds the resident size.
    vector_map_mb: int = Field(default=DEFAULT_MAP_BUDGET >> 20, ge=16)
    snapshot_every: int = Field(default=10000, ge=1)
    hnsw_m: int = Field(default=32, ge=4)
    hnsw_ef_construction: int = Field(default=200, ge=8)
    hnsw_ef_search: int = Field(default=256, ge=1)
    ivf_nlist: int = Field(default=0, ge=0)
    ivf_nprobe: int = Field(default=0, ge=0)  # 0: one list in 64, at least 32
    pq_m: int = Field(default=64, ge=1)
    pq_nbits: int = Field(default=8, ge=4, le=12)
    train_min: int = Field(default=10000, ge=0)
    rerank_factor: int = Field(default=4, ge=1)
    # rerank_factor of ivf_pq; 0: 64, x sqrt(n / 2.5M) past 2.5M vectors (128 at 10M)
    pq_rerank_factor: int = Field(default=0, ge=0)
    rerank_max: int = Field(default=8192, ge=1)  # candidates re-scored per query at most
    filter_exact_max: int = Field(default=20000, ge=0)
    compact_fraction: float = Field(default=0.2, gt=0, le=1)
    retrain_growth: float = Field(default=4.0, gt=1)
    train_points_per_list: int = Field(default=64, ge=8)
    exact_engine: Literal["numpy", "faiss"] = "numpy"
    # faiss.cvar.distance_compute_blas_threshold (used when exact_engine is faiss)
    faiss_blas_threshold: int = Field(default=20, ge=1)
    threads: int = Field(default=0, ge=0)  # faiss.omp_set_num_threads; 0: every CPU it may use
    # Hits per search (the gateway reads the same key: its deepest page ends there).
    max_k: int = Field(default=INDEX_MAX_K, ge=1)
    max_batch: int = Field(default=10000, ge=1)  # vectors (or ids) per request
    maintenance_interval_s: float = Field(default=1.0, gt=0)
    milvus_uri: str = ""  # empty: milvus-lite file $dir/milvus.db
    milvus_collection: str = "imgsearch"

    @property
    def index_dir(self) -> Path:
        return Path(self.dir).expanduser().resolve() if self.dir else (
            common_settings().data_dir / "index")
