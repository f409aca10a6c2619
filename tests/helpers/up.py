"""`imgsearch up` as a user runs it, in a child process with a fresh data dir and free ports:
wait for "imgsearch is running", read what it printed, stop it with Ctrl-C (SIGINT)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.procs import REPO, free_port
from tests.helpers.stack import clean_environ

RUNNING = "imgsearch is running at"
PEERS = ("catalog", "index", "embedding", "segmentation")


@dataclass
class Up:
    proc: subprocess.Popen[bytes]
    out_path: Path
    err_path: Path
    ports: dict[str, int]
    gateway_port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def output(self) -> str:
        return (self.out_path.read_text(errors="replace")
                + self.err_path.read_text(errors="replace"))

    def wait_running(self, timeout: float = 600.0) -> str:
        """The output once the stack runs; fails with the output if `up` stops first."""
        deadline = time.monotonic() + timeout
        while RUNNING not in self.out_path.read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise AssertionError(f"up exited with {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"up not running after {timeout:.0f} s:\n{self.output()}")
            time.sleep(0.5)
        return self.output()

    def wait_exit(self, timeout: float = 300.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        return self.wait_exit(90)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


def start_up(tmp: Path, *args: str, env: dict[str, str] | None = None) -> Up:
    """`imgsearch up ARGS` on free ports with the data dir `tmp/data`."""
    ports = {name: free_port() for name in PEERS}
    gateway_port = free_port()
    data_dir = tmp / "data"
    full_env = {**clean_environ(), "IMGSEARCH_DATA_DIR": str(data_dir),
                "IMGSEARCH_LOG_FORMAT": "text",
                **{f"IMGSEARCH_{n.upper()}_PORT": str(p) for n, p in ports.items()},
                **(env or {})}
    tmp.mkdir(parents=True, exist_ok=True)
    out_path, err_path = tmp / "up.out", tmp / "up.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "imgsearch.cli", "up", "--port", str(gateway_port), *args],
            cwd=REPO, env=full_env, stdout=out, stderr=err, start_new_session=True)
    return Up(proc, out_path, err_path, ports, gateway_port, data_dir)
