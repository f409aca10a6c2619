"""One whole stack for the gateway tests (MariaDB catalog, Redis broker and rate limits), started
through tests/helpers/stack.py; its database and Redis keys are removed afterwards."""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.redis_keys import drop_prefix
from tests.helpers.stack import Stack, start_stack

JWT_SECRET = "test-secret-" + "x" * 40


@pytest.fixture(scope="session")
def stack(mysql_server_url: str, redis_url: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    name = f"imgsearch_gw_{secrets.token_hex(4)}"
    server = make_url(mysql_server_url)
    admin = sa.create_engine(server.set(database=""))
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    prefix = f"imgsearch-gw-test-{secrets.token_hex(4)}:"
    running = None
    try:
        running = start_stack(
            tmp_path_factory.mktemp("stack"),
            database_url=server.set(database=name).render_as_string(hide_password=False),
            redis_url=redis_url, redis_prefix=prefix, segmentation=True,
            gateway_env={"IMGSEARCH_GATEWAY_JWT_SECRET": JWT_SECRET,
                         "IMGSEARCH_GATEWAY_MAX_UPLOAD_BYTES": "4000000",
                         "IMGSEARCH_GATEWAY_MAX_REQUEST_BYTES": "16000000",
                         "IMGSEARCH_GATEWAY_MAX_IMAGE_PIXELS": "20000000",
                         # The load test measures shedding, not the per-client limit.
                         "IMGSEARCH_GATEWAY_SEARCH_RATE_PER_MINUTE": "100000"})
        yield running
    finally:
        if running is not None:
            running.stop()
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()
        drop_prefix(redis_url, prefix)


def png_bytes(seed: int, size: tuple[int, int] = (96, 80)) -> bytes:
    """A distinct image per seed: coloured blocks and noise."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    image = Image.fromarray(blocks).resize(size, Image.Resampling.NEAREST)
    arr = np.asarray(image).astype(np.int16) + rng.integers(-20, 20, size=(*size[::-1], 3))
    out = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def files_of(blobs: list[bytes], prefix: str = "img") -> list[tuple[str, tuple[str, bytes]]]:
    return [("file", (f"{prefix}-{i}.png", blob)) for i, blob in enumerate(blobs)]


def count_files(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0
