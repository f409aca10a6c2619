"""`imgsearch up` (behind `make run`): starts from nothing, generates its secrets and first
admin, ingests the demo gallery, answers a search, restarts a worker killed with -9 (jobs
still complete), stops cleanly on Ctrl-C (SIGINT)."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.helpers.procs import REPO
from tests.helpers.up import start_up

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
    up = start_up(tmp_path, "--no-segmentation", env={
        "IMGSEARCH_RANDOM_WEIGHTS": "1", "IMGSEARCH_EMBEDDING_MODEL": "dinov2_vits14"})
    proc, data_dir, gateway_port = up.proc, up.data_dir, up.gateway_port
    err_path = up.err_path
    try:
        output = up.wait_running()
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
        # The worker runs beat as well: the periodic reconcile.
        [worker] = children_of(proc.pid, "imgsearch.cli worker --beat")
        os.killpg(worker, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while "worker restarted (restart 1)" not in err_path.read_text(errors="replace"):
            assert proc.poll() is None, up.output()
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
        code = up.stop()
    assert code == 0, up.output()
    assert "stopped" in up.out_path.read_text()
    for port in [gateway_port, *up.ports.values()]:
        assert not port_open(port)
