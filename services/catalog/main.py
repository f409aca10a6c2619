"""The catalog service app: `create_app()` for `imgsearch serve catalog`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

from services.catalog.api import images, jobs, users
from services.catalog.config import CatalogSettings, DatabaseSettings
from services.catalog.db.engine import Database
from services.catalog.db.migrate import current_revision, head_revision, upgrade
from services.catalog.repository.users import password_hasher
from services.common.app import create_service_app, internal_auth
from services.common.settings import common_settings

logger = logging.getLogger(__name__)


def _prepare(db: Database, settings: CatalogSettings) -> None:
    """Blocking start-up work: wait for the server, then migrate when configured."""
    db.wait_until_ready(settings.connect_timeout_s)
    if settings.migrate_on_start:
        upgrade(db.engine)


def create_app(
    settings: CatalogSettings | None = None,
    database: DatabaseSettings | None = None,
) -> FastAPI:
    settings = settings or CatalogSettings()
    database = database or DatabaseSettings()
    token = common_settings().require_internal_token()
    head = head_revision()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database.from_settings(database)
        logger.info("catalog database %s",
                    db.engine.url.render_as_string(hide_password=True))
        try:
            await asyncio.to_thread(_prepare, db, settings)
            app.state.db = db
            yield
        finally:
            db.dispose()

    async def readiness() -> dict[str, Any]:
        db: Database = app.state.db
        revision = await asyncio.to_thread(current_revision, db.engine)
        schema: bool | str = True if revision == head else (
            f"schema at revision {revision}, expected {head}: run `imgsearch db upgrade`")
        return {"database": True, "schema": schema}

    app = create_service_app(
        name="catalog",
        lifespan=lifespan,
        readiness=readiness,
        description="The source of truth: images, tags, users and jobs (MySQL / SQLite).",
    )
    app.state.settings = settings
    app.state.hasher = password_hasher(
        time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )
    guard = [Depends(internal_auth(token))]
    for router in (images.router, jobs.router, users.router):
        app.include_router(router, dependencies=guard)
    return app
