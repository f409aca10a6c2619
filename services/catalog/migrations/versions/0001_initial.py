"""Initial catalog schema: images, tags, image_tags, users, jobs, job_items.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from services.catalog.db.types import BigId, UTCDateTime, utf8_bin

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL_TABLE: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("sha256", sa.CHAR(64), nullable=False),
        sa.Column("original_filename", sa.String(255), nullable=False),
        sa.Column("storage_key", sa.String(255), nullable=False),
        sa.Column("thumbnail_key", sa.String(255), nullable=True),
        sa.Column("mime", sa.String(64), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("model_id", sa.String(128), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("near_duplicate_of", BigId, nullable=True),
        sa.Column("uploader", utf8_bin(64), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_images"),
        sa.UniqueConstraint("sha256", name="uq_images_sha256"),
        sa.ForeignKeyConstraint(["near_duplicate_of"], ["images.id"], ondelete="SET NULL",
                                name="fk_images_near_duplicate_of_images"),
        sa.CheckConstraint(
            "status IN ('pending', 'indexed', 'failed', 'deleting', 'removed')",
            name=op.f("ck_images_status")),
        **MYSQL_TABLE,
    )
    op.create_index("ix_images_status_created_at", "images", ["status", "created_at"])
    op.create_index("ix_images_status_updated_at", "images", ["status", "updated_at"])
    op.create_index("ix_images_created_at", "images", ["created_at"])
    op.create_index("ix_images_uploader", "images", ["uploader"])

    op.create_table(
        "tags",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", utf8_bin(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tags"),
        sa.UniqueConstraint("name", name="uq_tags_name"),
        **MYSQL_TABLE,
    )

    op.create_table(
        "image_tags",
        sa.Column("image_id", BigId, nullable=False),
        sa.Column("tag_id", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("image_id", "tag_id", name="pk_image_tags"),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE",
                                name="fk_image_tags_image_id_images"),
        sa.ForeignKeyConstraint(["tag_id"], ["tags.id"], ondelete="CASCADE",
                                name="fk_image_tags_tag_id_tags"),
        **MYSQL_TABLE,
    )
    op.create_index("ix_image_tags_tag_id_image_id", "image_tags", ["tag_id", "image_id"])

    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", utf8_bin(64), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("last_login_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
        sa.CheckConstraint("role IN ('admin', 'viewer')", name=op.f("ck_users_role")),
        **MYSQL_TABLE,
    )

    op.create_table(
        "jobs",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("done", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("skipped", sa.Integer, nullable=False),
        sa.Column("creator", utf8_bin(64), nullable=True),
        sa.Column("params", sa.JSON, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=True),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.CheckConstraint(
            "kind IN ('ingest', 'bulk_ingest', 'delete', 'reindex', 'reconcile')",
            name=op.f("ck_jobs_kind")),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_jobs_status")),
        **MYSQL_TABLE,
    )
    op.create_index("ix_jobs_kind_created_at", "jobs", ["kind", "created_at"])
    op.create_index("ix_jobs_status_created_at", "jobs", ["status", "created_at"])

    op.create_table(
        "job_items",
        sa.Column("job_id", BigId, nullable=False),
        sa.Column("image_id", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("job_id", "image_id", name="pk_job_items"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE",
                                name="fk_job_items_job_id_jobs"),
        sa.CheckConstraint("state IN ('pending', 'done', 'failed', 'skipped')",
                           name=op.f("ck_job_items_state")),
        **MYSQL_TABLE,
    )
    op.create_index("ix_job_items_job_id_state", "job_items", ["job_id", "state"])


def downgrade() -> None:
    op.drop_table("job_items")
    op.drop_table("jobs")
    op.drop_table("users")
    op.drop_table("image_tags")
    op.drop_table("tags")
    op.drop_table("images")
