"""A Redis server of the test's own on a free port, without persistence (`--save ""`,
`--appendonly no`): killed and started again, it comes back empty, as a production Redis
without persistence does after a restart. The machine's Redis is never touched."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from tests.helpers.procs import free_port
from tests.helpers.requirements import missing


class RedisServer:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing("redis-server", "apt-get install redis-server")
        self.binary = binary
        self.workdir = workdir
        self.port = port or free_port()
        self.log_path = workdir / f"redis-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self, timeout: float = 30.0) -> RedisServer:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--daemonize", "no", "--dir", str(self.workdir)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n"
                                   f"{self.log_path.read_text(errors='replace')}")
            client = self.client()
            try:
                if client.ping():
                    return self
            except redis.RedisError:
                pass
            finally:
                client.close()
            time.sleep(0.1)
        self.kill()
        raise TimeoutError(f"redis-server on {self.port} not answering after {timeout}s")

    def dbsize(self) -> int:
        client = self.client()
        try:
            return int(client.dbsize())
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: whatever it held in memory is gone."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
