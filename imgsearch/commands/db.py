"""`imgsearch db`: the catalog database's schema (migrations, reset)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from services.catalog.db.engine import Database


def _database() -> Database:
    from services.catalog.config import DatabaseSettings
    from services.catalog.db.engine import Database

    return Database.from_settings(DatabaseSettings())


def _where(database: Database) -> str:
    return database.engine.url.render_as_string(hide_password=True)


@click.group()
def db() -> None:
    """The catalog database (database: in config.yaml, IMGSEARCH_DATABASE_*)."""


@db.command()
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.option("--wait", "wait_s", type=float, default=30.0, show_default=True,
              help="Seconds to wait for the database server to answer.")
def upgrade(revision: str, wait_s: float) -> None:
    """Create or migrate the schema to REVISION."""
    from services.catalog.db.migrate import upgrade as run_upgrade

    database = _database()
    try:
        database.wait_until_ready(wait_s)
        now = run_upgrade(database.engine, revision)
        click.echo(f"{_where(database)}: schema at revision {now}")
    finally:
        database.dispose()


@db.command()
def current() -> None:
    """Print the schema revision in force and the newest one."""
    from services.catalog.db.migrate import current_revision, head_revision

    database = _database()
    try:
        click.echo(f"{_where(database)}: revision {current_revision(database.engine)} "
                   f"(newest {head_revision()})")
    finally:
        database.dispose()


@db.command()
@click.option("--yes", is_flag=True, help="Confirm: every catalog row is deleted.")
def reset(yes: bool) -> None:
    """Drop every catalog table and create the schema again (all data is lost)."""
    from services.catalog.db.migrate import drop_all
    from services.catalog.db.migrate import upgrade as run_upgrade

    if not yes:
        raise click.UsageError("reset deletes every image, tag, user and job row: add --yes")
    database = _database()
    try:
        drop_all(database.engine)
        now = run_upgrade(database.engine)
        click.echo(f"{_where(database)}: emptied, schema at revision {now}")
    finally:
        database.dispose()
