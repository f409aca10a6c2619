"""The schema three ways: the models, the migrations and config/database.sql agree."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine, make_url

from services.catalog.config import DatabaseSettings
from services.catalog.db.engine import Database
from services.catalog.db.migrate import current_revision, drop_all, head_revision, upgrade
from services.catalog.db.models import Base

DATABASE_SQL = Path(__file__).resolve().parents[2] / "config" / "database.sql"


def test_models_match_the_migrations(db: Database) -> None:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    assert current_revision(db.engine) == head_revision()


def test_downgrade_to_base_and_up_again(db: Database) -> None:
    upgrade(db.engine, "head")  # idempotent
    from alembic import command

    from services.catalog.db.migrate import alembic_config

    config = alembic_config()
    with db.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
    assert set(sa.inspect(db.engine).get_table_names()) == {"alembic_version"}
    assert upgrade(db.engine) == head_revision()


def test_drop_all_empties_the_database(db: Database) -> None:
    drop_all(db.engine)
    assert sa.inspect(db.engine).get_table_names() == []


def _statements(sql: str) -> list[str]:
    """database.sql -> statements (comment lines dropped; ';' ends a statement at line end)."""
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in re.split(r";\s*\n", body) if s.strip()]


def _run_database_sql(engine: Engine, name: str) -> None:
    """config/database.sql on the server of `engine`, for the database `name`."""
    sql = DATABASE_SQL.read_text().replace("`image_search`", f"`{name}`")
    assert f"`{name}`" in sql
    with engine.begin() as conn:
        for statement in _statements(sql):
            conn.exec_driver_sql(statement)


@pytest.fixture
def database_sql_url(mysql_server_url: str) -> Iterator[str]:
    """A database created by config/database.sql, only its name rewritten; dropped after."""
    name = f"imgsearch_sql_{secrets.token_hex(4)}"
    server = make_url(mysql_server_url).set(database="")
    engine = sa.create_engine(server)
    try:
        _run_database_sql(engine, name)
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        engine.dispose()


def _schema(engine: Engine) -> dict[str, Any]:
    """Everything inspect() sees, in a comparable form."""
    insp = sa.inspect(engine)
    out: dict[str, Any] = {}
    for table in sorted(insp.get_table_names()):
        out[table] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"], c.get("autoincrement"))
                        for c in insp.get_columns(table)],
            "pk": insp.get_pk_constraint(table)["constrained_columns"],
            "unique": sorted((u["name"], tuple(u["column_names"]))
                             for u in insp.get_unique_constraints(table)),
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                              for i in insp.get_indexes(table)),
            "fks": sorted((f["name"], tuple(f["constrained_columns"]), f["referred_table"],
                           tuple(f["referred_columns"]), f["options"].get("ondelete"))
                          for f in insp.get_foreign_keys(table)),
            "checks": sorted((c["name"], re.sub(r"\s+", "", c["sqltext"]).lower())
                             for c in insp.get_check_constraints(table)),
        }
    return out


@pytest.mark.integration
def test_database_sql_yields_the_migrated_schema(mysql_database_url: str,
                                                 database_sql_url: str) -> None:
    migrated = Database.from_settings(DatabaseSettings(), make_url(mysql_database_url))
    loaded = Database.from_settings(DatabaseSettings(), make_url(database_sql_url))
    try:
        upgrade(migrated.engine)
        expected, actual = _schema(migrated.engine), _schema(loaded.engine)
        assert set(expected) == {"alembic_version", "images", "tags", "image_tags", "users",
                                 "jobs", "job_items", "image_status_counts"}
        for table in expected:
            assert actual[table] == expected[table], table
        # The file records the revision, so the service's migrations carry on from it.
        assert current_revision(loaded.engine) == head_revision()
        assert upgrade(loaded.engine) == head_revision()
    finally:
        migrated.dispose()
        loaded.dispose()


@pytest.mark.integration
@pytest.mark.parametrize("revision", ["0001_initial", "0002_user_token_version",
                                      "0003_image_status_counts"])
def test_database_sql_over_an_older_database_then_migrations_give_the_schema(
        mysql_database_url: str, revision: str) -> None:
    """A database made by an older release (at `revision`), then this database.sql, then the
    service's migrations: the same schema as migrating a new database."""
    url = make_url(mysql_database_url)
    reference_url = url.set(database=f"{url.database}_ref")
    server = sa.create_engine(url.set(database=""))
    with server.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{reference_url.database}` CHARACTER SET utf8mb4")
    older = Database.from_settings(DatabaseSettings(), url)
    reference = Database.from_settings(DatabaseSettings(), reference_url)
    try:
        upgrade(older.engine, revision)
        _run_database_sql(server, str(url.database))
        assert upgrade(older.engine) == head_revision()
        upgrade(reference.engine)
        expected, actual = _schema(reference.engine), _schema(older.engine)
        for table in expected:
            assert actual[table] == expected[table], table
    finally:
        older.dispose()
        reference.dispose()
        with server.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{reference_url.database}`")
        server.dispose()
