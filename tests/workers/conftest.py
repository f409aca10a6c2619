"""One stack of real services (catalog on MariaDB, index, embedding) for every pipeline test of
this package: starting it costs more than most tests, and the tests only add distinct images,
so each checks its own images and that catalog and index still agree as a whole."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.helpers.redis_keys import drop_prefix
from tests.workers.stack import Stack, running_stack


@pytest.fixture(scope="package")
def shared_stack(tmp_path_factory: pytest.TempPathFactory, mysql_server_url: str,
                 redis_url: str) -> Iterator[Stack]:
    """The services, their own MariaDB database and Redis key prefix, all removed afterwards."""
    root = tmp_path_factory.mktemp("workers-stack")
    data_dir = root / "data"
    data_dir.mkdir()
    name = f"imgsearch_w_{secrets.token_hex(4)}"
    server = make_url(mysql_server_url)
    admin = sa.create_engine(server.set(database=""), pool_pre_ping=True)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    prefix = f"imgsearch-test-w-{secrets.token_hex(4)}:"
    try:
        with running_stack(data_dir=data_dir, log_dir=root, token=secrets.token_urlsafe(24),
                           database_url=server.set(database=name).render_as_string(
                               hide_password=False),
                           broker_url=redis_url, redis_prefix=prefix) as stack:
            yield stack
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()
        drop_prefix(redis_url, prefix)
