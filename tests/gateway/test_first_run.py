"""The first run as a user meets it: `imgsearch up` (behind `make run`) on a fresh data dir.

Every fresh start ingests the whole demo gallery, also on a machine busy with other work (the
first admin is created before the gateway starts, and the gateway is not ready before its own
bootstrap ran); the DINOv2 weights are downloaded on first start (progress, resume, digest
recorded); offline, one screen says the two ways on; a port already taken stops `up` before
it starts anything.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.helpers.procs import REPO
from tests.helpers.up import start_up
from tests.segmentation.fileserver import Script, serve_file

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEMO = sorted((REPO / "gallery" / "demo").glob("*.jpg"))
FAST = {"IMGSEARCH_EMBEDDING_MODEL": "dinov2_vits14"}


@contextmanager
def cpu_load(processes: int = 2) -> Iterator[None]:
    """Busy loops at normal priority on every core, as other work on a 2-core machine."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(processes)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait(10)


def gallery_total(url: str) -> int:
    return int(httpx.get(f"{url}/api/v1/images", params={"limit": 1}, timeout=30)
               .json()["total"])


def test_every_fresh_start_under_load_ingests_the_whole_gallery(tmp_path: Path) -> None:
    starts = 3
    with cpu_load():
        for attempt in range(starts):
            # The first start is `make run` as it is (segmentation too); the others skip
            # MobileSAM's start-up to keep the test short.
            args = () if attempt == 0 else ("--no-segmentation",)
            up = start_up(tmp_path / f"start-{attempt}", *args,
                          env={**FAST, "IMGSEARCH_RANDOM_WEIGHTS": "1"})
            try:
                output = up.wait_running()
                assert f"demo gallery: {len(DEMO)} of {len(DEMO)} indexed" in output, output
                assert "not ingested" not in output and "not indexed" not in output, output
                assert gallery_total(up.url) == len(DEMO)
            finally:
                code = up.stop()
            assert code == 0, up.output()


def official_pth(tmp_path: Path) -> bytes:
    """ViT-S/14 weights as Meta publishes them: a torch zip of the official key names."""
    from services.embedding.engine import Dinov2Model
    from tests.embedding.test_weights import _torch_zip

    model = Dinov2Model.random("dinov2_vits14", seed=7, threads=1)
    path = tmp_path / "official.pth"
    _torch_zip(path, model.state_dict())
    model.close()
    return path.read_bytes()


def test_first_start_downloads_the_weights_resuming_a_partial_file(tmp_path: Path) -> None:
    payload = official_pth(tmp_path)
    script = Script(payload=payload)
    with serve_file(script) as file_url:
        base = file_url.removesuffix("/file")
        models = tmp_path / "up" / "data" / "models"
        models.mkdir(parents=True)
        # An earlier start was cut off after a third of the file.
        (models / "dinov2_vits14.pth.part").write_bytes(payload[: len(payload) // 3])
        # The official layout is <base>/<arch>/<arch>_pretrain.pth; the test server has
        # one path, so the base is given with a query that swallows the rest.
        up = start_up(tmp_path / "up", "--no-segmentation", "--no-gallery", env={
            **FAST, "IMGSEARCH_EMBEDDING_WEIGHTS_BASE_URL": f"{base}/file?path="})
        try:
            output = up.wait_running(300)
            assert "First start: downloading the dinov2_vits14 weights" in output
            assert "RANDOM WEIGHTS" not in output
            config = httpx.get(f"{up.url}/api/v1/config", timeout=30).json()
            assert config["model"]["random_weights"] is False
        finally:
            assert up.stop() == 0, up.output()
    weights = models / "dinov2_vits14.pth"
    assert weights.read_bytes() == payload
    assert not (models / "dinov2_vits14.pth.part").exists()
    # Resumed from where the cut-off start stopped, then the digest recorded for later starts.
    assert script.requests == [f"bytes={len(payload) // 3}-"]
    digest = hashlib.sha256(payload).hexdigest()
    assert (models / "dinov2_vits14.pth.sha256").read_text().split()[0] == digest


def test_offline_first_start_says_the_two_ways_on(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    up = start_up(tmp_path, "--no-segmentation", env={
        **FAST, "IMGSEARCH_EMBEDDING_WEIGHTS_BASE_URL": f"http://127.0.0.1:{port}/dinov2",
        "IMGSEARCH_EMBEDDING_DOWNLOAD_ATTEMPTS": "1"})
    assert up.wait_exit(120) == 1, up.output()
    output = up.output()
    assert "No DINOv2 weights for dinov2_vits14" in output
    assert "Two ways on" in output
    assert str(up.data_dir / "models" / "dinov2_vits14.pth") in output
    assert "IMGSEARCH_EMBEDDING_WEIGHTS=" in output
    assert "IMGSEARCH_RANDOM_WEIGHTS=1 make run" in output
    assert "Traceback" not in output
    # Nothing was started.
    assert not (up.data_dir / "logs").exists()


def test_a_port_in_use_stops_up_before_anything_starts(tmp_path: Path) -> None:
    up_env = {**FAST, "IMGSEARCH_RANDOM_WEIGHTS": "1"}
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        up = start_up(tmp_path, "--no-segmentation",
                      env={**up_env, "IMGSEARCH_CATALOG_PORT": str(taken)})
        assert up.wait_exit(60) == 1, up.output()
    output = up.output()
    assert f"catalog: 127.0.0.1:{taken}" in output
    assert "already in use" in output and "IMGSEARCH_CATALOG_PORT" in output
    assert not (up.data_dir / "logs").exists()
