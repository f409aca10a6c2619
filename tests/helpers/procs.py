"""Real service processes for integration tests: start on a free port, wait until ready,
stop (or kill -9) on demand."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceProcess:
    """`imgsearch serve NAME` in a child process, its output in a log file."""

    def __init__(self, name: str, env: Mapping[str, str], log_dir: Path,
                 port: int | None = None, ready_path: str = "/readyz",
                 host: str = "127.0.0.1") -> None:
        self.name = name
        self.host = host
        self.port = port or free_port()
        self.env = {**os.environ, **env}
        where = self.port if host == "127.0.0.1" else f"{host}-{self.port}"
        self.log_path = log_dir / f"{name}-{where}.log"
        self.ready_path = ready_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 120.0) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "imgsearch.cli", "serve", self.name, "--host", self.host,
             "--port", str(self.port)],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                code = self.proc.returncode
                raise RuntimeError(f"{self.name} exited with {code}:\n{self.tail()}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready after {timeout}s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown hooks run."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def catalog_service(tmp: Path, database_url: str, **env: str) -> Iterator[tuple[str, str]]:
    """A catalog service process on `database_url` (data and logs under `tmp`, extra `env`):
    (its URL, the internal token its callers send); stopped on exit."""
    token = secrets.token_urlsafe(24)
    proc = ServiceProcess("catalog", env={
        "IMGSEARCH_INTERNAL_TOKEN": token,
        "IMGSEARCH_DATA_DIR": str(tmp / "data"),
        "IMGSEARCH_DATABASE_URL": database_url,
        "IMGSEARCH_LOG_FORMAT": "text",
        **env,
    }, log_dir=tmp)
    proc.start(timeout=60)
    try:
        yield proc.url, token
    finally:
        proc.stop()


class MilvusServer:
    """`python -m milvus_lite server` on a free port over `data_dir` (the same pymilvus
    client reaches it as a Milvus server or cluster), its output in `log`."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir, self.log = data_dir, log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "milvus_lite", "server", "--data-dir",
                 str(self.data_dir), "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"milvus-lite server exited: {self.log.read_text()[-2000:]}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        raise RuntimeError("milvus-lite server did not start listening")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None
