"""Catalog fixtures: a migrated database on each backend (SQLite file, MariaDB/MySQL)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy.engine import make_url

from services.catalog.config import DatabaseSettings
from services.catalog.db.engine import Database
from services.catalog.db.migrate import upgrade
from services.catalog.repository import images
from services.catalog.repository.images import ImageRecord
from services.catalog.repository.session import transact
from tests.helpers.procs import catalog_service

BACKENDS = ["sqlite", pytest.param("mysql", marks=pytest.mark.integration)]


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database of each backend (MySQL: dropped after the test)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    url: str = request.getfixturevalue("mysql_database_url")
    return url


@pytest.fixture
def db(backend_url: str) -> Iterator[Database]:
    """A migrated catalog database on each backend."""
    database = Database.from_settings(DatabaseSettings(), make_url(backend_url))
    upgrade(database.engine)
    yield database
    database.dispose()


@pytest.fixture
def hasher() -> PasswordHasher:
    """Cheap argon2 parameters: the tests check behaviour, not hashing cost."""
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def sha(n: int) -> str:
    return f"{n:064x}"


@pytest.fixture
def make_image(db: Database) -> Callable[..., ImageRecord]:
    """Create an image row (pending) with sensible defaults; returns the record."""
    counter = iter(range(1, 1_000_000))

    def make(**overrides: Any) -> ImageRecord:
        n = next(counter)
        digest = overrides.pop("sha256", sha(n))
        fields: dict[str, Any] = {
            "sha256": digest, "original_filename": f"photo-{n}.jpg",
            "storage_key": f"{digest[:2]}/{digest}.jpg", "mime": "image/jpeg",
            "width": 640, "height": 480, "bytes": 1000 + n,
        }
        fields.update(overrides)
        record, _ = transact(db, images.create_image, **fields)
        return record

    return make


@contextlib.contextmanager
def catalog_process(tmp: Path, database_url: str, **env: str) -> Iterator[httpx.Client]:
    """A catalog service process on `database_url` (`catalog_service`), and an HTTP client of
    it that carries the internal token."""
    with catalog_service(tmp, database_url, **env) as (url, token), httpx.Client(
            base_url=url, timeout=30, headers={"X-Internal-Token": token}) as client:
        yield client


def create_over_http(client: httpx.Client, n: int) -> int:
    """Create image `n` (its bytes' digest `sha(n)`) through the route; its id."""
    digest = sha(n)
    response = client.post("/v1/images", json={
        "sha256": digest, "original_filename": f"{n}.jpg",
        "storage_key": f"{digest[:2]}/{digest}.jpg", "mime": "image/jpeg", "width": 8,
        "height": 6, "bytes": 100})
    assert response.status_code in (200, 201), response.text
    return int(response.json()["image"]["id"])
