"""DatabaseSettings: the original README's keys build the URL; the environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.catalog.config import CatalogSettings, DatabaseSettings


def test_default_is_sqlite_under_the_data_dir(tmp_path: Path) -> None:
    url = DatabaseSettings().sqlalchemy_url()
    assert url.get_backend_name() == "sqlite"
    assert url.database == str(tmp_path / "data" / "catalog.db")


def test_mysql_url_from_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSEARCH_DATABASE_DRIVER", "mysql+pymysql")
    monkeypatch.setenv("IMGSEARCH_DATABASE_HOST", "db.internal")
    monkeypatch.setenv("IMGSEARCH_DATABASE_PORT", "3307")
    monkeypatch.setenv("IMGSEARCH_DATABASE_USER", "imgsearch")
    monkeypatch.setenv("IMGSEARCH_DATABASE_PASSWORD", "p@ss:word/1")
    monkeypatch.setenv("IMGSEARCH_DATABASE_DB_NAME", "gallery")
    settings = DatabaseSettings()
    url = settings.sqlalchemy_url()
    assert url.drivername == "mysql+pymysql"
    assert (url.host, url.port, url.username, url.password, url.database) == (
        "db.internal", 3307, "imgsearch", "p@ss:word/1", "gallery")
    assert url.query == {"charset": "utf8mb4"}
    assert "p@ss" not in repr(settings)


def test_url_overrides_the_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSEARCH_DATABASE_DRIVER", "mysql+pymysql")
    monkeypatch.setenv("IMGSEARCH_DATABASE_URL", "sqlite:////srv/catalog.db")
    assert str(DatabaseSettings().sqlalchemy_url()) == "sqlite:////srv/catalog.db"


def test_yaml_keys_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("database:\n  driver: mysql+pymysql\n  host: yaml-host\n"
                      "  db_name: from_yaml\ncatalog:\n  migrate_on_start: false\n")
    monkeypatch.setenv("IMGSEARCH_CONFIG", str(config))
    monkeypatch.setenv("IMGSEARCH_DATABASE_DB_NAME", "from_env")
    url = DatabaseSettings().sqlalchemy_url()
    assert (url.host, url.database) == ("yaml-host", "from_env")
    assert CatalogSettings().migrate_on_start is False


def test_unknown_driver_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSEARCH_DATABASE_DRIVER", "postgresql")
    with pytest.raises(ValidationError):
        DatabaseSettings()


def test_catalog_defaults() -> None:
    settings = CatalogSettings()
    assert settings.port == 8104
    assert settings.migrate_on_start is True
