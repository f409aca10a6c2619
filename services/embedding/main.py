"""The embedding service app: `create_app()` builds it; the lifespan loads the model (off the
event loop) and runs the micro-batcher."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI
from numpy.typing import NDArray

from services.common.app import create_service_app, internal_auth
from services.common.settings import common_settings
from services.embedding.batching import BatchMetrics, MicroBatcher
from services.embedding.config import EmbeddingSettings
from services.embedding.engine import IMAGENET_MEAN, IMAGENET_STD, Dinov2Model, EmbedResult
from services.embedding.routes import ServiceState, create_router
from services.embedding.schemas import InfoResponse, Preprocessing
from services.embedding.weights_store import DownloadError
from services.embedding.weights_store.ensure import ensure_weights
from services.embedding.weights_store.load import LoadedModel, load_model
from services.embedding.weights_store.locate import how_to_get

logger = logging.getLogger(__name__)


def _embed_fn(model: Dinov2Model) -> Any:
    def embed(pixels: NDArray[np.float32], patch_tokens: bool, mean_pooled: bool) -> EmbedResult:
        return model.embed(pixels, patch_tokens=patch_tokens, mean_pooled=mean_pooled)

    return embed


def build_info(settings: EmbeddingSettings, loaded: LoadedModel) -> InfoResponse:
    config = loaded.model.config
    return InfoResponse(
        model=loaded.model.model_id,
        architecture=config.name,
        dim=config.dim,
        patch_size=config.patch_size,
        num_registers=config.num_registers,
        preprocessing=Preprocessing(mode=settings.resize_mode, image_size=settings.image_size,
                                    mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)),
        random_weights=loaded.random_weights,
        weights_sha256=loaded.model.weights_sha256,
    )


def _log_download(url: str, dest: Path) -> None:
    logger.info("no weights on disk: downloading %s to %s (once; resumed if cut)", url, dest)


def create_app(settings: EmbeddingSettings | None = None) -> FastAPI:
    """The embedding service (internal token required on /v1 routes)."""
    settings = settings or EmbeddingSettings()
    common = common_settings()
    token = common.require_internal_token()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            if not common.random_weights:
                await asyncio.to_thread(ensure_weights, settings, common.models_dir,
                                        progress=False, on_download=_log_download)
            loaded = await asyncio.to_thread(
                load_model, settings.model, weights=settings.weights_path(),
                models_dir=common.models_dir, random_allowed=common.random_weights,
                threads=settings.threads)
        except DownloadError as exc:
            logger.error("cannot start the embedding service: no weights on disk and the "
                         "download failed: %s. Or: %s", exc.message, how_to_get(settings.model))
            raise
        except Exception as exc:
            # Said plainly before the traceback: this is what the operator must act on.
            logger.error("cannot start the embedding service: %s", exc)
            raise
        batcher = MicroBatcher(
            _embed_fn(loaded.model), max_batch=settings.max_batch,
            max_wait_s=settings.max_wait_ms / 1000.0, queue_size=settings.queue_size,
            metrics=BatchMetrics(app.state.metrics_registry))
        batcher.start()
        app.state.embedding = ServiceState(settings, batcher, build_info(settings, loaded))
        logger.info("embedding service ready: %s (random weights: %s)",
                    loaded.model.model_id, loaded.random_weights)
        try:
            yield
        finally:
            await batcher.stop()
            loaded.model.close()

    async def readiness() -> dict[str, Any]:
        state: ServiceState | None = getattr(app.state, "embedding", None)
        if state is None:
            return {"model": "loading"}
        return {"model": True, "batcher": state.batcher.running or "stopped"}

    app = create_service_app(name="embedding", lifespan=lifespan, readiness=readiness,
                             description="DINOv2 features of images (pure-NumPy engine).")
    app.include_router(create_router(internal_auth(token)))
    return app
