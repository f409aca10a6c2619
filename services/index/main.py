"""The index service app. Run it as its own process (`imgsearch serve index`): Faiss, like
torch, hangs in a child forked from a parent that already used it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from services.common.app import create_service_app, internal_auth
from services.common.cpu import available_cpus
from services.common.settings import common_settings
from services.index.config import IndexSettings
from services.index.routes import build_router

logger = logging.getLogger(__name__)


def _configure_faiss(settings: IndexSettings) -> None:
    import faiss

    faiss.omp_set_num_threads(settings.threads or available_cpus())
    faiss.cvar.distance_compute_blas_threshold = settings.faiss_blas_threshold
    logger.info("BLAS held to the calling thread", extra={"libraries": blas_on_calling_thread()})


def blas_on_calling_thread() -> list[str]:
    """Hold every BLAS threaded by pthreads (NumPy's OpenBLAS) to the thread that calls it,
    for the life of the process; returns the libraries limited.

    Such a BLAS keeps its worker threads spinning for a while after every call. The service's
    searches are small and frequent (an ingest's near-duplicate search every ~80 ms), so a
    worker thread never slept: measured, 50 searches of 9 queries over 4,000 x 384 vectors
    80 ms apart cost 4.0 s of process CPU for 0.02 s on the calling thread, a core taken from
    the embedding service beside it; on one thread, 0.09 s. Requests already run side by
    side on the server's threadpool. Faiss's own BLAS is threaded by OpenMP (its threads set
    above, used by its batch searches and k-means) and is left as it is."""
    from threadpoolctl import ThreadpoolController

    spinning = ThreadpoolController().select(threading_layer="pthreads")
    spinning.limit(limits=1)
    return [str(lib["filepath"]) for lib in spinning.info()]


def create_app(settings: IndexSettings | None = None) -> FastAPI:
    settings = settings or IndexSettings()
    token = common_settings().require_internal_token()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from services.index.store.manager import IndexManager

        _configure_faiss(settings)
        manager = await run_in_threadpool(IndexManager, settings, settings.index_dir)
        manager.start()
        app.state.manager = manager
        logger.info("index service ready", extra={"dir": str(settings.index_dir),
                                                  "backend": settings.backend})
        try:
            yield
        finally:
            # A clean shutdown leaves a snapshot: the next start replays no log.
            await run_in_threadpool(manager.close, True)

    async def readiness() -> dict[str, Any]:
        manager = getattr(app.state, "manager", None)
        if manager is None:
            return {"index": "not loaded"}
        return {"index": True, "count": manager.live.count}

    app = create_service_app(name="index", lifespan=lifespan, readiness=readiness,
                             description="Vector index: Faiss or Milvus, durable.")
    app.state.settings = settings
    app.include_router(build_router(internal_auth(token)))
    return app
