"""A Celery worker process for integration tests: `imgsearch worker` (or another app given
with -A) in its own process group, its output in a log file; start, wait until ready, stop,
kill -9 (the whole worker or one pool child)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def worker_env(*, broker_url: str, redis_prefix: str = "imgsearch-test:", queue: str = "",
               data_dir: Path | None = None, internal_token: str = "",
               extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The IMGSEARCH_* variables of a worker on `broker_url` with its own prefix and queue."""
    env = {
        "IMGSEARCH_WORKERS_BROKER_URL": broker_url,
        "IMGSEARCH_WORKERS_REDIS_KEY_PREFIX": redis_prefix,
        "IMGSEARCH_WORKERS_QUEUE": queue or f"q-{uuid.uuid4().hex[:8]}",
        "IMGSEARCH_LOG_FORMAT": "text",
    }
    if data_dir is not None:
        env["IMGSEARCH_DATA_DIR"] = str(data_dir)
    if internal_token:
        env["IMGSEARCH_INTERNAL_TOKEN"] = internal_token
    env.update(extra or {})
    return env


class WorkerProcess:
    """One worker node: `python -m imgsearch.cli worker` unless `app` names another module."""

    def __init__(self, env: Mapping[str, str], log_dir: Path, *, concurrency: int = 2,
                 beat: bool = False, app: str | None = None,
                 extra_args: Sequence[str] = ()) -> None:
        self.env = {**os.environ, **env}
        self.name = f"w{uuid.uuid4().hex[:6]}"
        self.log_path = log_dir / f"worker-{self.name}.log"
        self.concurrency = concurrency
        self.beat = beat
        self.app = app
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def command(self) -> list[str]:
        if self.app:
            cmd = [sys.executable, "-m", "celery", "-A", self.app, "worker", "--loglevel",
                   "info", "--concurrency", str(self.concurrency), "--queues",
                   self.env["IMGSEARCH_WORKERS_QUEUE"]]
            if self.beat:
                cmd.append("--beat")
        else:
            cmd = [sys.executable, "-m", "imgsearch.cli", "worker", "--concurrency",
                   str(self.concurrency)]
            if self.beat:
                cmd.append("--beat")
        return [*cmd, "--hostname", f"{self.name}@%h", *self.extra_args]

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.command(), cwd=REPO, env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        try:
            self.wait_for(r"@\S+ ready\.", timeout)
        except BaseException:
            self.kill()  # a worker that never became ready must not outlive the test
            raise
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for(self, pattern: str, timeout: float) -> None:
        """Wait until `pattern` appears in this run's log output."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            if regex.search(self.log()[self._log_offset:]):
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            time.sleep(0.1)
        raise TimeoutError(f"no {pattern!r} in the worker log after {timeout}s:\n{self.tail()}")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def child_pids(self) -> list[int]:
        """The pool processes (direct children of the worker's main process)."""
        out: list[int] = []
        for task in Path(f"/proc/{self.pid}/task").glob("*"):
            try:
                out += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                continue
        return out

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the main process and its pool children at once: nothing runs after."""
        if self.alive():
            os.killpg(self.pid, signal.SIGKILL)
            assert self.proc is not None
            self.proc.wait(10)

    def kill_child(self, pid: int) -> None:
        """SIGKILL one pool child; the main process notices and replaces it."""
        os.kill(pid, signal.SIGKILL)

    def stop(self, timeout: float = 30.0) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it lingers."""
        if not self.alive():
            return
        assert self.proc is not None
        os.killpg(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
