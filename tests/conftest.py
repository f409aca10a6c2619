"""Shared fixtures. The MySQL-compatible server and Redis are the machine's, named by
IMGSEARCH_TEST_MYSQL_URL and IMGSEARCH_TEST_REDIS_URL (the Makefile and .ci/run default them
to 127.0.0.1:3306 and 127.0.0.1:6379); where one is unset, the tests that need it skip
(fail under CI=true: tests/helpers/requirements.py).
Every run uses its own database names and Redis key prefixes and removes them afterwards."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.settings import common_settings
from tests.helpers.redis_keys import drop_prefix
from tests.helpers.requirements import missing

RUN_ID = uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def mysql_server_url() -> Iterator[str]:
    """A MySQL-compatible server URL (no database name chosen)."""
    url = os.environ.get("IMGSEARCH_TEST_MYSQL_URL")
    if not url:
        missing("a MySQL-compatible server", "IMGSEARCH_TEST_MYSQL_URL is not set")
    yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("IMGSEARCH_TEST_REDIS_URL")
    if not url:
        missing("Redis", "IMGSEARCH_TEST_REDIS_URL is not set")
    yield url


@pytest.fixture
def mysql_database_url(mysql_server_url: str) -> Iterator[str]:
    """A fresh database of this run on the MySQL server, dropped afterwards."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    name = f"imgsearch_t_{RUN_ID}_{secrets.token_hex(3)}"
    server = make_url(mysql_server_url)
    admin = sa.create_engine(server.set(database=""), pool_pre_ping=True)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test; every key under it is deleted afterwards."""
    prefix = f"imgsearch-test-{RUN_ID}-{secrets.token_hex(3)}:"
    yield prefix
    drop_prefix(redis_url, prefix)


@pytest.fixture
def internal_token() -> str:
    return secrets.token_urlsafe(24)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test reads the developer's environment overrides or writes into ./data."""
    for key in list(os.environ):
        if key.startswith("IMGSEARCH_") and not key.startswith("IMGSEARCH_TEST_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("IMGSEARCH_DATA_DIR", str(tmp_path / "data"))
    common_settings.cache_clear()
    yield
    common_settings.cache_clear()
