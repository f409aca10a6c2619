-- imgsearch catalog schema for MySQL 8 / MariaDB 10.6+.
--
--   mysql -u root -p < config/database.sql
--
-- Creates the database `image_search` (keep database.db_name in config/config.yaml the same)
-- and every table at migration revision 0004_image_tags_created_at, recorded in alembic_version so the
-- service's own migrations (`imgsearch db upgrade`, or at start with migrate_on_start) carry
-- on from here. Safe to run again: nothing that exists is touched.
-- A test keeps this file identical to the migrations (tests/catalog/test_schema.py).

CREATE DATABASE IF NOT EXISTS `image_search` CHARACTER SET utf8mb4;
USE `image_search`;

CREATE TABLE IF NOT EXISTS alembic_version (
    version_num VARCHAR(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
) ENGINE=InnoDB CHARSET=utf8mb4;

-- One row per distinct image file (same bytes = same sha256 = same row).
-- status: pending -> indexed | failed | deleting; indexed -> deleting;
--         failed -> pending | deleting; deleting -> removed.
CREATE TABLE IF NOT EXISTS images (
    id BIGINT NOT NULL AUTO_INCREMENT,
    sha256 CHAR(64) NOT NULL,
    original_filename VARCHAR(255) NOT NULL,
    storage_key VARCHAR(255) NOT NULL,
    thumbnail_key VARCHAR(255),
    mime VARCHAR(64) NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    bytes BIGINT NOT NULL,
    status VARCHAR(16) NOT NULL,
    model_id VARCHAR(128),
    error TEXT,
    near_duplicate_of BIGINT,
    uploader VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    CONSTRAINT pk_images PRIMARY KEY (id),
    CONSTRAINT uq_images_sha256 UNIQUE (sha256),
    CONSTRAINT fk_images_near_duplicate_of_images FOREIGN KEY (near_duplicate_of)
        REFERENCES images (id) ON DELETE SET NULL,
    CONSTRAINT ck_images_status
        CHECK (status IN ('pending', 'indexed', 'failed', 'deleting', 'removed')),
    INDEX ix_images_status_created_at (status, created_at),
    INDEX ix_images_status_updated_at (status, updated_at),
    INDEX ix_images_created_at (created_at),
    INDEX ix_images_uploader (uploader)
) ENGINE=InnoDB CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS tags (
    id INTEGER NOT NULL AUTO_INCREMENT,
    name VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    CONSTRAINT pk_tags PRIMARY KEY (id),
    CONSTRAINT uq_tags_name UNIQUE (name)
) ENGINE=InnoDB CHARSET=utf8mb4;

-- created_at is the image's own (never changed after the insert), copied so that the
-- (tag_id, created_at, image_id) index holds a tag's images in listing order.
CREATE TABLE IF NOT EXISTS image_tags (
    image_id BIGINT NOT NULL,
    tag_id INTEGER NOT NULL,
    created_at DATETIME(6) NOT NULL,
    CONSTRAINT pk_image_tags PRIMARY KEY (image_id, tag_id),
    CONSTRAINT fk_image_tags_image_id_images FOREIGN KEY (image_id)
        REFERENCES images (id) ON DELETE CASCADE,
    CONSTRAINT fk_image_tags_tag_id_tags FOREIGN KEY (tag_id)
        REFERENCES tags (id) ON DELETE CASCADE,
    INDEX ix_image_tags_tag_id_created_at_image_id (tag_id, created_at, image_id)
) ENGINE=InnoDB CHARSET=utf8mb4;

-- password_hash is argon2id (argon2-cffi); create users with `imgsearch users create`.
CREATE TABLE IF NOT EXISTS users (
    id INTEGER NOT NULL AUTO_INCREMENT,
    username VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    `role` VARCHAR(16) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    last_login_at DATETIME(6),
    -- Bumped by a password or role change: tokens carrying an older version are refused.
    token_version INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT pk_users PRIMARY KEY (id),
    CONSTRAINT uq_users_username UNIQUE (username),
    CONSTRAINT ck_users_role CHECK (`role` IN ('admin', 'viewer'))
) ENGINE=InnoDB CHARSET=utf8mb4;

-- done / failed / skipped are recomputed from job_items on every outcome.
CREATE TABLE IF NOT EXISTS jobs (
    id BIGINT NOT NULL AUTO_INCREMENT,
    kind VARCHAR(32) NOT NULL,
    status VARCHAR(16) NOT NULL,
    total INTEGER NOT NULL,
    done INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    skipped INTEGER NOT NULL,
    creator VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    params JSON,
    error TEXT,
    created_at DATETIME(6) NOT NULL,
    started_at DATETIME(6),
    finished_at DATETIME(6),
    CONSTRAINT pk_jobs PRIMARY KEY (id),
    CONSTRAINT ck_jobs_kind
        CHECK (kind IN ('ingest', 'bulk_ingest', 'delete', 'reindex', 'reconcile')),
    CONSTRAINT ck_jobs_status
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    INDEX ix_jobs_kind_created_at (kind, created_at),
    INDEX ix_jobs_status_created_at (status, created_at)
) ENGINE=InnoDB CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS job_items (
    job_id BIGINT NOT NULL,
    image_id BIGINT NOT NULL,
    state VARCHAR(16) NOT NULL,
    error TEXT,
    updated_at DATETIME(6) NOT NULL,
    CONSTRAINT pk_job_items PRIMARY KEY (job_id, image_id),
    CONSTRAINT fk_job_items_job_id_jobs FOREIGN KEY (job_id)
        REFERENCES jobs (id) ON DELETE CASCADE,
    CONSTRAINT ck_job_items_state CHECK (state IN ('pending', 'done', 'failed', 'skipped')),
    INDEX ix_job_items_job_id_state (job_id, state)
) ENGINE=InnoDB CHARSET=utf8mb4;

-- Rows per image status (stats read these instead of counting every image); kept exact by
-- the catalog in the transaction of every insert, status change and delete.
CREATE TABLE IF NOT EXISTS image_status_counts (
    status VARCHAR(16) NOT NULL,
    n BIGINT NOT NULL,
    CONSTRAINT pk_image_status_counts PRIMARY KEY (status),
    CONSTRAINT ck_image_status_counts_status
        CHECK (status IN ('pending', 'indexed', 'failed', 'deleting', 'removed'))
) ENGINE=InnoDB CHARSET=utf8mb4;

INSERT IGNORE INTO image_status_counts (status, n)
    SELECT s.status, (SELECT COUNT(*) FROM images WHERE images.status = s.status)
    FROM (SELECT 'pending' AS status UNION ALL SELECT 'indexed' UNION ALL SELECT 'failed'
          UNION ALL SELECT 'deleting' UNION ALL SELECT 'removed') AS s;

-- A database at 0001 lacks 0002's column (CREATE ... IF NOT EXISTS adds none): add it here,
-- since the revision moves past 0002 below.
SET @add_token_version := (SELECT IF(COUNT(*) = 0,
    'ALTER TABLE users ADD COLUMN token_version INTEGER NOT NULL DEFAULT 0', 'DO 0')
    FROM information_schema.columns WHERE table_schema = DATABASE()
    AND table_name = 'users' AND column_name = 'token_version');
PREPARE add_token_version FROM @add_token_version;
EXECUTE add_token_version;
DEALLOCATE PREPARE add_token_version;

-- One revision row. A database this file creates is at 0004. One at 0001 or 0002 is now at
-- 0003 (0003's table is made above); from 0003 the service's migration 0004 carries on, as
-- it fills image_tags.created_at from the rows (a CREATE ... IF NOT EXISTS adds no column).
UPDATE alembic_version SET version_num = '0003_image_status_counts'
    WHERE version_num IN ('0001_initial', '0002_user_token_version');
INSERT INTO alembic_version (version_num)
    SELECT '0004_image_tags_created_at' FROM DUAL
    WHERE NOT EXISTS (SELECT 1 FROM alembic_version);
