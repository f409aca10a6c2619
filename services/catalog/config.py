"""Settings of the catalog service and of its database (the original README's keys)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, SecretStr, field_validator

from services.common.peers import port_field
from services.common.settings import SectionSettings, common_settings

if TYPE_CHECKING:
    from sqlalchemy.engine import URL


class CatalogSettings(SectionSettings, section="catalog"):
    """The service: where it listens, its limits, whether it migrates the schema at start."""

    port: int = port_field("catalog")
    # Run `alembic upgrade head` when the service starts. Right for SQLite and a single
    # catalog process; with several replicas on one MySQL, run `imgsearch db upgrade` once
    # from a deploy step instead and set this to false.
    migrate_on_start: bool = True
    # How long the start-up waits for the database to answer (a MySQL container may still
    # be initialising) before giving up.
    connect_timeout_s: float = Field(default=60.0, gt=0)
    max_page_size: int = Field(default=500, ge=1)
    max_lookup_ids: int = Field(default=10000, ge=1)
    max_tags_per_request: int = Field(default=100, ge=1)
    items_failed_limit: int = Field(default=100, ge=0)
    password_min_length: int = Field(default=8, ge=1)
    # argon2id cost (argon2-cffi's defaults: RFC 9106 low-memory profile). Existing hashes
    # are upgraded at the next successful login when these change.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)


class DatabaseSettings(SectionSettings, section="database"):
    """`database:` of config.yaml. `url` (a full SQLAlchemy URL) wins over the other keys."""

    driver: str = "sqlite"
    host: str = "localhost"
    port: int = Field(default=3306, ge=0, le=65535)
    user: str = "root"
    password: SecretStr = SecretStr("")
    db_name: str = "image_search"
    charset: str = "utf8mb4"
    url: SecretStr = SecretStr("")
    pool_size: int = Field(default=10, ge=1)
    pool_recycle_s: int = Field(default=1800, ge=1)
    # SQLite: how long a writer waits for the lock before "database is locked".
    sqlite_busy_timeout_ms: int = Field(default=10000, ge=0)

    @field_validator("driver")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        value = value.strip()
        if value != "sqlite" and not value.startswith(("mysql", "mariadb")):
            raise ValueError(f"database.driver must be sqlite or mysql+pymysql, not {value!r}")
        return value

    def sqlite_path(self, data_dir: Path | None = None) -> Path:
        return (data_dir or common_settings().data_dir) / "catalog.db"

    def sqlalchemy_url(self, data_dir: Path | None = None) -> URL:
        """The URL to connect with: `url` if set, else built from driver/host/port/... keys.

        (A method, not `url()`: the field `url` holds the override.)
        """
        # Imported here: every process reads this module's keys (services/common/settings.py
        # checks config.yaml against them), and only the catalog has SQLAlchemy.
        from sqlalchemy.engine import URL, make_url

        explicit = self.url.get_secret_value().strip()
        if explicit:
            return make_url(explicit)
        if self.driver == "sqlite":
            return URL.create("sqlite", database=str(self.sqlite_path(data_dir)))
        return URL.create(
            self.driver,
            username=self.user or None,
            password=self.password.get_secret_value() or None,
            host=self.host,
            port=self.port,
            database=self.db_name,
            query={"charset": self.charset} if self.charset else {},
        )
