"""Route dependencies: the database, settings and password hasher of the running app."""

from __future__ import annotations

from typing import Annotated

from argon2 import PasswordHasher
from fastapi import Depends, Request

from services.catalog.config import CatalogSettings
from services.catalog.db.engine import Database
from services.common.errors import InvalidRequest


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_settings(request: Request) -> CatalogSettings:
    settings: CatalogSettings = request.app.state.settings
    return settings


def get_hasher(request: Request) -> PasswordHasher:
    hasher: PasswordHasher = request.app.state.hasher
    return hasher


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[CatalogSettings, Depends(get_settings)]
HasherDep = Annotated[PasswordHasher, Depends(get_hasher)]


def check_count(name: str, given: int, limit: int) -> None:
    if given > limit:
        raise InvalidRequest(f"at most {limit} {name} per request",
                             detail={"given": given, "max": limit})


def page_limit(limit: int | None, max_page_size: int, default: int = 50) -> int:
    """The page size asked for (at most `max_page_size`), or the default capped by it."""
    if limit is None:
        return min(default, max_page_size)
    check_count("rows", limit, max_page_size)
    return limit
