"""The segmentation service app: `create_app()` (no work at import time)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

from services.common.app import create_service_app, internal_auth
from services.common.http import ServiceClient
from services.common.settings import common_settings
from services.segmentation.config import SegmentationSettings
from services.segmentation.predictor.loader import ModelHolder
from services.segmentation.routes import Metrics, Selections, router


def create_app(settings: SegmentationSettings | None = None) -> FastAPI:
    """The FastAPI app; the model loads in the background once the app starts."""
    settings = settings or SegmentationSettings()
    common = common_settings()
    token = common.require_internal_token()
    holder = ModelHolder(settings, common)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        catalog = ServiceClient("catalog", settings.resolved_catalog_url(), token,
                                timeout=settings.catalog_timeout_s)
        app.state.catalog = catalog
        holder.start()
        try:
            yield
        finally:
            await catalog.aclose()

    async def readiness() -> dict[str, Any]:
        return holder.readiness()

    app = create_service_app(
        name="segmentation", lifespan=lifespan, readiness=readiness,
        description="MobileSAM masks from clicks and boxes, one encoder pass per image.",
    )
    app.state.settings = settings
    app.state.common = common
    app.state.holder = holder
    app.state.selections = Selections(settings)
    app.state.metrics = Metrics(app.state.metrics_registry, holder)
    app.include_router(router, dependencies=[Depends(internal_auth(token))])
    return app
