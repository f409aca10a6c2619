"""`imgsearch db` and `imgsearch users` against each backend."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from imgsearch.cli import cli
from services.catalog.config import DatabaseSettings
from services.catalog.db.engine import Database
from services.catalog.db.migrate import current_revision, head_revision
from services.catalog.repository import users
from services.catalog.repository.session import read


@pytest.fixture
def cli_env(backend_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("IMGSEARCH_DATABASE_URL", backend_url)
    monkeypatch.setenv("IMGSEARCH_CATALOG_ARGON2_MEMORY_KIB", "1024")
    monkeypatch.setenv("IMGSEARCH_CATALOG_ARGON2_TIME_COST", "1")
    return backend_url


def _db(url: str) -> Database:
    return Database.from_settings(DatabaseSettings(), make_url(url))


def test_upgrade_create_admin_and_reset(cli_env: str) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert head_revision() in result.output

    result = runner.invoke(cli, ["users", "create", "root", "--admin", "--password-stdin"],
                           input="first-admin-pw\n")
    assert result.exit_code == 0, result.output
    database = _db(cli_env)
    try:
        user = read(database, users.get_user, username="root")
        assert user.role == "admin"
        again = runner.invoke(cli, ["users", "create", "root", "--password-stdin"],
                              input="other-password\n")
        assert again.exit_code == 1 and "user_exists" in again.output
        short = runner.invoke(cli, ["users", "create", "eve", "--password-stdin"], input="x\n")
        assert short.exit_code == 1 and "weak_password" in short.output

        refused = runner.invoke(cli, ["db", "reset"])
        assert refused.exit_code == 2
        assert read(database, users.list_users)
        result = runner.invoke(cli, ["db", "reset", "--yes"])
        assert result.exit_code == 0, result.output
        assert read(database, users.list_users) == []
        assert current_revision(database.engine) == head_revision()
    finally:
        database.dispose()


def test_password_prompt_needs_confirmation(cli_env: str) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["users", "create", "viewer1"],
                           input="viewer-pass-1\nviewer-pass-2\nviewer-pass-1\nviewer-pass-1\n")
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output.lower()
    database = _db(cli_env)
    try:
        assert read(database, users.get_user, username="viewer1").role == "viewer"
    finally:
        database.dispose()
    listed = runner.invoke(cli, ["users", "list"])
    assert "viewer1\tviewer" in listed.output
