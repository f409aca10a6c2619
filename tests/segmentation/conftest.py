"""Fixtures of the segmentation tests. torch stays out of the pytest process (a process that
used torch must not fork, and other areas' tests fork): checkpoints are written by a child
process and the model runs in real service processes."""

from __future__ import annotations

import io
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.procs import REPO, ServiceProcess

CHECKPOINT_SEED = 1


def write_random_checkpoint(path: Path, seed: int) -> None:
    """A randomly initialised MobileSAM vit_t saved with torch.save(state_dict)."""
    code = ("import sys; from pathlib import Path; "
            "from services.segmentation.predictor.model import save_random_checkpoint; "
            "save_random_checkpoint(Path(sys.argv[1]), int(sys.argv[2]))")
    subprocess.run([sys.executable, "-c", code, str(path), str(seed)], cwd=REPO, check=True,
                   timeout=300, capture_output=True)


@pytest.fixture(scope="session")
def sam_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sam") / "mobile_sam.pt"
    write_random_checkpoint(path, CHECKPOINT_SEED)
    return path


def png_bytes(width: int, height: int, seed: int = 0) -> bytes:
    """A PNG with a bright disc on a dark noisy background."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    disc = (yy - height / 2) ** 2 + (xx - width / 2) ** 2 < (min(width, height) / 4) ** 2
    pixels[disc] = (220, 180, 40)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def segmentation_env(data_dir: Path, token: str, **extra: str) -> dict[str, str]:
    env = {
        "IMGSEARCH_DATA_DIR": str(data_dir),
        "IMGSEARCH_INTERNAL_TOKEN": token,
        "IMGSEARCH_LOG_FORMAT": "text",
        "IMGSEARCH_SEGMENTATION_THREADS": "2",
        "IMGSEARCH_SEGMENTATION_DOWNLOAD": "false",
    }
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def start_segmentation(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., tuple[ServiceProcess, str, Path]]]:
    """Start segmentation processes (stopped at the end of the module): call with env
    overrides, get (process, internal token, data dir). With `with_catalog=True` a catalog
    service (SQLite in the same data dir) starts first and segmentation is pointed at it."""
    started: list[ServiceProcess] = []

    def start(ready_path: str = "/readyz", with_catalog: bool = False,
              **extra: str) -> tuple[ServiceProcess, str, Path]:
        root = tmp_path_factory.mktemp("seg")
        data_dir = root / "data"
        data_dir.mkdir()
        token = secrets.token_urlsafe(24)
        env = segmentation_env(data_dir, token, **extra)
        if with_catalog:
            catalog = ServiceProcess("catalog", env={**env, "IMGSEARCH_DATABASE_DRIVER": "sqlite"},
                                     log_dir=root)
            started.append(catalog)
            catalog.start(timeout=180)
            env["IMGSEARCH_SEGMENTATION_CATALOG_URL"] = catalog.url
        proc = ServiceProcess("segmentation", env=env, log_dir=root, ready_path=ready_path)
        started.append(proc)
        proc.start(timeout=180)
        return proc, token, data_dir

    yield start
    for proc in reversed(started):
        proc.stop()
