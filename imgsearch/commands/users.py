"""`imgsearch users`: catalog users, straight through the catalog's repository, so the first
admin can be created before any service runs."""

from __future__ import annotations

import sys

import click


@click.group()
def users() -> None:
    """Users of the web app (admin and viewer roles)."""


@users.command()
@click.argument("username")
@click.option("--admin", is_flag=True, help="Role admin (default: viewer).")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of standard input.")
def create(username: str, admin: bool, password_stdin: bool) -> None:
    """Create user USERNAME; the password is prompted for twice (there is no default)."""
    import re

    from services.catalog.config import CatalogSettings, DatabaseSettings
    from services.catalog.db.engine import Database
    from services.catalog.db.migrate import upgrade
    from services.catalog.repository import users as repo
    from services.catalog.repository.session import transact
    from services.catalog.schemas import USERNAME_PATTERN
    from services.common.errors import DomainError

    if not re.match(USERNAME_PATTERN, username):
        raise click.BadParameter("1-64 letters, digits, '_', '.', '@' or '-'",
                                 param_hint="USERNAME")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    settings = CatalogSettings()
    hasher = repo.password_hasher(time_cost=settings.argon2_time_cost,
                                  memory_kib=settings.argon2_memory_kib,
                                  parallelism=settings.argon2_parallelism)
    database = Database.from_settings(DatabaseSettings())
    try:
        password_hash = repo.hash_password(hasher, password,
                                           min_length=settings.password_min_length)
        database.wait_until_ready(settings.connect_timeout_s)
        if settings.migrate_on_start:
            upgrade(database.engine)
        user = transact(database, repo.create_user, username=username,
                        password_hash=password_hash, role="admin" if admin else "viewer")
    except DomainError as exc:
        raise click.ClickException(f"{exc.message} ({exc.code})") from exc
    finally:
        database.dispose()
    click.echo(f"user {user.username} created (role {user.role})")


@users.command("list")
def list_users() -> None:
    """List users: name, role, last login."""
    from services.catalog.config import DatabaseSettings
    from services.catalog.db.engine import Database
    from services.catalog.repository import users as repo
    from services.catalog.repository.session import read

    database = Database.from_settings(DatabaseSettings())
    try:
        for user in read(database, repo.list_users):
            last = user.last_login_at.isoformat() if user.last_login_at else "never"
            click.echo(f"{user.username}\t{user.role}\tlast login {last}")
    finally:
        database.dispose()
