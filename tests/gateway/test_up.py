"""`imgsearch up` (behind `make run`): starts from nothing, generates its secrets and first
admin, ingests the demo gallery, answers a search, restarts a worker killed with -9 (jobs
still complete), stops cleanly on Ctrl-C (SIGINT)."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.helpers.procs import REPO, free_port
from tests.helpers.stack import clean_environ

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def children_of(pid: int, marker: str) -> list[int]:
    """Direct child processes of `pid` whose command line contains `marker`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and marker in cmdline:
            found.append(int(stat.parent.name))
    return found


def test_up_ingests_searches_and_stops(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("catalog", "index", "embedding", "segmentation")}
    gateway_port = free_port()
    data_dir = tmp_path / "data"
    env = {**clean_environ(), "IMGSEARCH_DATA_DIR": str(data_dir),
           "IMGSEARCH_RANDOM_WEIGHTS": "1", "IMGSEARCH_EMBEDDING_MODEL": "dinov2_vits14",
           "IMGSEARCH_LOG_FORMAT": "text",
           **{f"IMGSEARCH_{n.upper()}_PORT": str(p) for n, p in ports.items()}}
    out_path, err_path = tmp_path / "up.out", tmp_path / "up.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "imgsearch.cli", "up", "--port", str(gateway_port),
             "--no-segmentation"], cwd=REPO, env=env, stdout=out, stderr=err,
            start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while "imgsearch is running at" not in out_path.read_text(errors="replace"):
            assert proc.poll() is None, out_path.read_text() + err_path.read_text()
            assert time.monotonic() < deadline, out_path.read_text() + err_path.read_text()
            time.sleep(0.5)
        output = out_path.read_text() + err_path.read_text()
        assert "RANDOM WEIGHTS" in output and "MEANINGLESS" in output
        password = re.search(r"username admin\s+password (\S{12,})", output)
        assert password
        secrets_env = data_dir / "secrets.env"
        assert secrets_env.stat().st_mode & 0o777 == 0o600
        assert "IMGSEARCH_GATEWAY_JWT_SECRET=" in secrets_env.read_text()

        url = f"http://127.0.0.1:{gateway_port}"
        query = REPO / "gallery" / "demo" / "forest-02.jpg"
        response = httpx.post(f"{url}/api/v1/search", timeout=60,
                              files={"file": (query.name, query.read_bytes())})
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["results"][0]["original_filename"] == "forest-02.jpg"
        assert page["results"][0]["score"] == pytest.approx(1.0, abs=1e-3)
        total = httpx.get(f"{url}/api/v1/images", params={"limit": 1}).json()["total"]
        assert total == len(list((REPO / "gallery" / "demo").glob("*.jpg")))
        assert httpx.get(f"{url}/api/v1/config").json()["model"]["random_weights"] is True

        # The worker killed with -9: `up` starts a new one, which takes the next job.
        [worker] = children_of(proc.pid, "imgsearch.cli worker")
        os.killpg(worker, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while "worker restarted (restart 1)" not in err_path.read_text(errors="replace"):
            assert proc.poll() is None, out_path.read_text() + err_path.read_text()
            assert time.monotonic() < deadline, err_path.read_text()
            time.sleep(0.3)
        assert "worker exited with code -9" in err_path.read_text()
        [replacement] = children_of(proc.pid, "imgsearch.cli worker")
        assert replacement != worker
        token = httpx.post(f"{url}/api/v1/auth/login", json={
            "username": "admin", "password": password.group(1)}).json()["access_token"]
        admin = httpx.Client(base_url=url, timeout=60,
                             headers={"Authorization": f"Bearer {token}"})
        extra = REPO / "gallery" / "demo" / "forest-02.jpg"
        with admin:
            buffer = io.BytesIO()
            Image.open(extra).rotate(90, expand=True).save(buffer, format="PNG")
            body = admin.post("/api/v1/admin/images",
                              files={"file": ("after-restart.png", buffer.getvalue())}).json()
            deadline = time.monotonic() + 300
            while (job := admin.get(f"/api/v1/jobs/{body['job_id']}").json())["status"] not in (
                    "succeeded", "failed"):
                assert time.monotonic() < deadline, job
                time.sleep(0.5)
            assert (job["status"], job["done"]) == ("succeeded", 1), job
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert code == 0, out_path.read_text() + err_path.read_text()
    assert "stopped" in out_path.read_text()
    for port in [gateway_port, *ports.values()]:
        assert not port_open(port)


def test_up_without_weights_refuses_with_the_embedding_message(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("catalog", "index", "embedding")}
    gateway_port = free_port()
    env = {**clean_environ(), "IMGSEARCH_DATA_DIR": str(tmp_path / "data"),
           **{f"IMGSEARCH_{n.upper()}_PORT": str(p) for n, p in ports.items()}}
    result = subprocess.run(
        [sys.executable, "-m", "imgsearch.cli", "up", "--port", str(gateway_port),
         "--no-segmentation"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "embedding stopped while starting" in result.stderr
    assert "imgsearch weights download" in result.stderr
    assert "IMGSEARCH_RANDOM_WEIGHTS=1" in result.stderr
    for port in [gateway_port, *ports.values()]:
        assert not port_open(port)
