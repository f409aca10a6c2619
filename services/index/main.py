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
