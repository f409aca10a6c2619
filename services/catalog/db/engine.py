"""Engines and sessions: SQLite pragmas, MySQL isolation, and a start-up wait for the server.

`Database` holds an engine and two session factories: `read()` and `write()`. On SQLite a
write session opens with `BEGIN IMMEDIATE` so two writers queue on the lock (busy timeout)
instead of failing when a read transaction tries to upgrade; on MySQL both are the same.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.orm import Session, sessionmaker
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from services.catalog.config import DatabaseSettings

logger = logging.getLogger(__name__)

_BEGIN_OPTION = "catalog_sqlite_begin"


def _sqlite_engine(url: URL, settings: DatabaseSettings) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False,
                      "timeout": settings.sqlite_busy_timeout_ms / 1000},
        pool_pre_ping=True,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's own transaction handling is off: SQLAlchemy emits BEGIN itself (below),
        # which is the only way to choose BEGIN IMMEDIATE for writers.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(settings.sqlite_busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def create_engine(settings: DatabaseSettings, url: URL | None = None) -> Engine:
    """An engine for `url` (default: the settings' URL) with the right options per backend."""
    url = url or settings.sqlalchemy_url()
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, settings)
    return sa.create_engine(
        url,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        pool_recycle=settings.pool_recycle_s,
        pool_pre_ping=True,
        # Each statement sees the latest committed rows: re-reading after a lost race
        # (duplicate sha256, compare-and-set) must see the winner.
        isolation_level="READ COMMITTED",
    )


class Database:
    """An engine plus read and write session factories."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        writer = engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"}) if self.is_sqlite \
            else engine
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(writer, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: DatabaseSettings, url: URL | None = None) -> Database:
        return cls(create_engine(settings, url))

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        with self._write() as session:
            yield session

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def wait_until_ready(self, timeout_s: float) -> None:
        """Retry `SELECT 1` with backoff until the server answers or `timeout_s` passes."""
        for attempt in Retrying(
            retry=retry_if_exception_type(sa.exc.OperationalError),
            stop=stop_after_delay(timeout_s),
            wait=wait_exponential(multiplier=0.2, max=3.0),
            reraise=True,
            before_sleep=lambda state: logger.warning(
                "database not reachable yet (attempt %d): %s", state.attempt_number,
                state.outcome.exception() if state.outcome else None),
        ):
            with attempt:
                self.ping()

    def dispose(self) -> None:
        self.engine.dispose()
