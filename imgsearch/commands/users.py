"""`imgsearch users`: catalog users, straight through the catalog's repository, so the first
admin can be created before any service runs. `passwd`, `role` and `delete` revoke every token
the user had (gateways notice within `gateway.session_check_ttl_s`)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from services.common.vocabulary import Role


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
                        password_hash=password_hash, role=Role.admin if admin else Role.viewer)
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


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


def _run(fn: Callable[..., Any], /, **kwargs: Any) -> Any:
    """`fn(session=..., **kwargs)` in a write transaction on the configured catalog; a domain
    error becomes a one-line CLI error."""
    from services.catalog.config import CatalogSettings, DatabaseSettings
    from services.catalog.db.engine import Database
    from services.catalog.db.migrate import upgrade
    from services.catalog.repository.session import transact
    from services.common.errors import DomainError

    settings = CatalogSettings()
    database = Database.from_settings(DatabaseSettings())
    try:
        database.wait_until_ready(settings.connect_timeout_s)
        if settings.migrate_on_start:
            upgrade(database.engine)
        return transact(database, fn, **kwargs)
    except DomainError as exc:
        raise click.ClickException(f"{exc.message} ({exc.code})") from exc
    finally:
        database.dispose()


@users.command()
@click.argument("username")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of standard input.")
def passwd(username: str, password_stdin: bool) -> None:
    """Set USERNAME's password; the user's existing tokens stop working."""
    from services.catalog.config import CatalogSettings
    from services.catalog.repository import users as repo
    from services.common.errors import DomainError

    settings = CatalogSettings()
    hasher = repo.password_hasher(time_cost=settings.argon2_time_cost,
                                  memory_kib=settings.argon2_memory_kib,
                                  parallelism=settings.argon2_parallelism)
    try:
        password_hash = repo.hash_password(hasher, _read_password(password_stdin),
                                           min_length=settings.password_min_length)
    except DomainError as exc:
        raise click.ClickException(f"{exc.message} ({exc.code})") from exc
    _run(repo.update_user, username=username, password_hash=password_hash)
    click.echo(f"password of {username} changed; their earlier tokens are revoked")


@users.command()
@click.argument("username")
@click.argument("role", type=click.Choice([r.value for r in Role]))
def role(username: str, role: str) -> None:
    """Give USERNAME the ROLE admin or viewer; the user's existing tokens stop working."""
    from services.catalog.repository import users as repo

    user = _run(repo.update_user, username=username, role=role)
    click.echo(f"{user.username} is now {user.role}; their earlier tokens are revoked")


@users.command()
@click.argument("username")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(username: str, yes: bool) -> None:
    """Delete USERNAME; the user's tokens stop working (the only admin cannot be deleted)."""
    from services.catalog.repository import users as repo

    if not yes:
        click.confirm(f"delete user {username}?", abort=True)
    _run(repo.delete_user, username=username)
    click.echo(f"user {username} deleted")
