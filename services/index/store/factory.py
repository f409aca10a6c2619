"""Settings -> backends: a generation directory opened as a durable Faiss index, or a
Milvus collection."""

from __future__ import annotations

import logging
from pathlib import Path

from services.index.config import IndexSettings
from services.index.store.durable import DurableIndex
from services.index.store.faiss_backend import FaissIndex
from services.index.store.genmeta import GenerationMeta
from services.index.store.params import FaissParams
from services.index.store.protocol import VectorIndex

logger = logging.getLogger(__name__)


def faiss_params(settings: IndexSettings) -> FaissParams:
    return FaissParams(
        hnsw_m=settings.hnsw_m, hnsw_ef_construction=settings.hnsw_ef_construction,
        hnsw_ef_search=settings.hnsw_ef_search, ivf_nlist=settings.ivf_nlist,
        ivf_nprobe=settings.ivf_nprobe, pq_m=settings.pq_m, pq_nbits=settings.pq_nbits,
        train_min=settings.train_min, rerank_factor=settings.rerank_factor,
        pq_rerank_factor=settings.pq_rerank_factor, rerank_max=settings.rerank_max,
        filter_exact_max=settings.filter_exact_max, compact_fraction=settings.compact_fraction,
        retrain_growth=settings.retrain_growth, exact_engine=settings.exact_engine,
        train_points_per_list=settings.train_points_per_list,
    )


def open_generation(settings: IndexSettings, directory: Path, *,
                    model: str | None = None, dim: int | None = None,
                    index_type: str | None = None) -> VectorIndex:
    """Open (or create) the generation stored in `directory`.

    The type is the one recorded by the last rebuild unless the configured type changed
    since; a new generation takes `index_type` or the configured type.
    """
    directory.mkdir(parents=True, exist_ok=True)
    meta = GenerationMeta.load(directory)
    if meta is None:
        meta = GenerationMeta(type=index_type or settings.type, config_type=settings.type,
                              model=model, dim=dim)
        meta.save(directory)
    elif meta.config_type != settings.type:
        logger.info("configured index type changed from %s to %s", meta.config_type,
                    settings.type)
        meta.type, meta.config_type, meta.params = settings.type, settings.type, {}
        meta.save(directory)
    if settings.backend == "milvus":
        from services.index.store.milvus_backend import MilvusIndex

        uri = settings.milvus_uri or str(directory.parent / "milvus.db")
        return MilvusIndex(uri, f"{settings.milvus_collection}_{directory.name.replace('-', '_')}",
                           index_type=meta.type, pinned_model=meta.model, pinned_dim=meta.dim,
                           filter_exact_max=settings.filter_exact_max)
    params = faiss_params(settings).replace(meta.params)
    on_disk = settings.vector_store == "disk" or (
        settings.vector_store == "auto" and meta.type in ("ivf_sq8", "ivf_pq"))
    backend = FaissIndex(meta.type, params, store_dir=directory / "vectors" if on_disk else None,
                         store_dtype=settings.vector_dtype, store_reads=settings.vector_reads,
                         store_map_budget=settings.vector_map_mb << 20)
    return DurableIndex(directory, backend, snapshot_every=settings.snapshot_every, meta=meta,
                        maintenance_interval_s=settings.maintenance_interval_s)
