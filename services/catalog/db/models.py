"""The catalog's tables as SQLAlchemy 2 models: one set for MySQL 8 / MariaDB and SQLite.

The migrations in `services/catalog/migrations` and `config/database.sql` create exactly this
schema (tests compare them). Status columns are strings with CHECK constraints, not native
ENUMs, so adding a status is a plain migration on both backends.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.catalog.db.types import BigId, UTCDateTime, utcnow, utf8_bin
from services.common.vocabulary import ImageStatus, ItemState, JobKind, JobStatus, Role

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

MYSQL_TABLE = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def _in(column: str, values: Iterable[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)


class Image(Base):
    __tablename__ = "images"
    __table_args__: Any = (
        sa.CheckConstraint(_in("status", ImageStatus), name="status"),
        # Lists by status newest first, and the stale-row sweep (status + updated_at).
        sa.Index(None, "status", "created_at"),
        sa.Index(None, "status", "updated_at"),
        sa.Index(None, "created_at"),
        sa.Index(None, "uploader"),
        MYSQL_TABLE,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(sa.CHAR(64), unique=True)
    original_filename: Mapped[str] = mapped_column(sa.String(255))
    storage_key: Mapped[str] = mapped_column(sa.String(255))
    thumbnail_key: Mapped[str | None] = mapped_column(sa.String(255))
    mime: Mapped[str] = mapped_column(sa.String(64))
    width: Mapped[int] = mapped_column(sa.Integer)
    height: Mapped[int] = mapped_column(sa.Integer)
    bytes: Mapped[int] = mapped_column(sa.BigInteger)
    status: Mapped[str] = mapped_column(sa.String(16))
    model_id: Mapped[str | None] = mapped_column(sa.String(128))
    error: Mapped[str | None] = mapped_column(sa.Text)
    near_duplicate_of: Mapped[int | None] = mapped_column(
        BigId, sa.ForeignKey("images.id", ondelete="SET NULL")
    )
    uploader: Mapped[str | None] = mapped_column(utf8_bin(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ImageStatusCount(Base):
    """Rows of `images` per status, one row per status: `GET /v1/stats` reads these five
    rows instead of counting millions. Kept exact by the repository, in the transaction of
    every insert, status change and delete (`repository/counts.py`)."""

    __tablename__ = "image_status_counts"
    __table_args__: Any = (
        sa.CheckConstraint(_in("status", ImageStatus), name="status"),
        MYSQL_TABLE,
    )

    status: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    n: Mapped[int] = mapped_column(sa.BigInteger)


class Tag(Base):
    __tablename__ = "tags"
    __table_args__: Any = (MYSQL_TABLE,)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(utf8_bin(64), unique=True)


class ImageTag(Base):
    """An image carries a tag. `created_at` is the image's own (it never changes after the
    insert), copied here so that the (tag_id, created_at, image_id) index holds a tag's
    images in listing order: a tag-filtered page reads its 50 entries off that index
    whatever the tag's share of the rows, instead of walking the listing until 50 carry it."""

    __tablename__ = "image_tags"
    # The primary key serves "tags of an image"; the index serves "images with a tag",
    # newest first.
    __table_args__: Any = (sa.Index(None, "tag_id", "created_at", "image_id"), MYSQL_TABLE)

    image_id: Mapped[int] = mapped_column(
        BigId, sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class User(Base):
    __tablename__ = "users"
    __table_args__: Any = (sa.CheckConstraint(_in("role", Role), name="role"), MYSQL_TABLE)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(utf8_bin(64), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Bumped by a password or role change: tokens issued with an older version are refused.
    token_version: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__: Any = (
        sa.CheckConstraint(_in("kind", JobKind), name="kind"),
        sa.CheckConstraint(_in("status", JobStatus), name="status"),
        sa.Index(None, "kind", "created_at"),
        sa.Index(None, "status", "created_at"),
        MYSQL_TABLE,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    status: Mapped[str] = mapped_column(sa.String(16))
    total: Mapped[int] = mapped_column(sa.Integer)
    # Derived from job_items on every outcome (never incremented), so retries cannot
    # count twice.
    done: Mapped[int] = mapped_column(sa.Integer)
    failed: Mapped[int] = mapped_column(sa.Integer)
    skipped: Mapped[int] = mapped_column(sa.Integer)
    creator: Mapped[str | None] = mapped_column(utf8_bin(64))
    params: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class JobItem(Base):
    __tablename__ = "job_items"
    # No foreign key to images: a delete job's items outlive the rows they removed.
    __table_args__: Any = (
        sa.CheckConstraint(_in("state", ItemState), name="state"),
        sa.Index(None, "job_id", "state"),
        MYSQL_TABLE,
    )

    job_id: Mapped[int] = mapped_column(
        BigId, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    image_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    state: Mapped[str] = mapped_column(sa.String(16))
    error: Mapped[str | None] = mapped_column(sa.Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
