"""The whole stack as real processes on free ports, for integration and browser tests.

    with running_stack(tmp_path) as stack:          # SQLite catalog, embedded broker
        client = stack.admin_client()
        client.post("/api/v1/admin/images", files=...)

Starts catalog, index, embedding (random weights, dinov2_vits14 by default), optionally
segmentation (random weights), one Celery worker and the gateway, all sharing one data
directory and internal token; creates an admin (`stack.admin_username`,
`stack.admin_password`). MariaDB/MySQL (`database_url`) and Redis (`redis_url` +
`redis_prefix`, used as the broker and for the gateway's rate limits) when given.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.procs import ServiceProcess, free_port
from tests.helpers.worker import WorkerProcess, worker_env

SERVICES = ("catalog", "index", "embedding", "segmentation", "gateway")


def clean_environ() -> dict[str, str]:
    """os.environ without the developer's IMGSEARCH_* overrides (test URLs are kept)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("IMGSEARCH_") or k.startswith("IMGSEARCH_TEST_")}


@dataclass
class Stack:
    data_dir: Path
    log_dir: Path
    env: dict[str, str]
    internal_token: str
    admin_username: str
    admin_password: str
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    worker: WorkerProcess | None = None
    _admin_token: str | None = None

    @property
    def url(self) -> str:
        """The gateway's base URL (the public API is under /api/v1)."""
        return self.processes["gateway"].url

    def service_url(self, name: str) -> str:
        return self.processes[name].url

    def client(self, token: str | None = None, timeout: float = 120.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def login(self, username: str, password: str) -> str:
        with self.client() as client:
            response = client.post("/api/v1/auth/login",
                                   json={"username": username, "password": password})
            response.raise_for_status()
            token: str = response.json()["access_token"]
            return token

    def admin_token(self) -> str:
        """The admin's token, logged in once (login is rate limited per client)."""
        if self._admin_token is None:
            self._admin_token = self.login(self.admin_username, self.admin_password)
        return self._admin_token

    def admin_client(self) -> httpx.Client:
        return self.client(self.admin_token())

    def internal(self, name: str) -> httpx.Client:
        """A client of an internal service, carrying the internal token."""
        return httpx.Client(base_url=self.service_url(name), timeout=60,
                            headers={"X-Internal-Token": self.internal_token})

    def create_user(self, username: str, password: str, role: str = "viewer") -> None:
        with self.admin_client() as client:
            client.post("/api/v1/admin/users", json={
                "username": username, "password": password, "role": role}).raise_for_status()

    def wait_job(self, client: httpx.Client, job_id: int, timeout: float = 300.0
                 ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}").json()
            if job.get("status") in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(0.3)
        raise TimeoutError(f"job {job_id} not finished after {timeout}s; worker log:\n"
                           f"{self.worker.log()[-3000:] if self.worker else ''}")

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        for name in reversed(SERVICES):
            proc = self.processes.get(name)
            if proc is not None:
                proc.stop()

    def logs(self) -> str:
        parts = [f"--- {name}\n{proc.tail(30)}" for name, proc in self.processes.items()]
        if self.worker is not None:
            parts.append(f"--- worker\n{self.worker.log()[-3000:]}")
        return "\n".join(parts)


def start_stack(tmp: Path, *, database_url: str | None = None, redis_url: str | None = None,
                redis_prefix: str = "", segmentation: bool = False,
                model: str = "dinov2_vits14", worker: bool = True,
                gateway_env: Mapping[str, str] | None = None,
                extra_env: Mapping[str, str] | None = None) -> Stack:
    """Start every process (the caller must `stop()` the stack, even on failure)."""
    data_dir = tmp / "stack-data"
    log_dir = tmp / "stack-logs"
    data_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    ports = {name: free_port() for name in SERVICES}
    env = {
        "IMGSEARCH_DATA_DIR": str(data_dir),
        "IMGSEARCH_INTERNAL_TOKEN": token,
        "IMGSEARCH_RANDOM_WEIGHTS": "1",
        "IMGSEARCH_LOG_FORMAT": "text",
        "IMGSEARCH_EMBEDDING_MODEL": model,
        **{f"IMGSEARCH_{name.upper()}_PORT": str(port) for name, port in ports.items()},
    }
    if database_url:
        env["IMGSEARCH_DATABASE_URL"] = database_url
    prefix = redis_prefix or f"imgsearch-stack-{uuid.uuid4().hex[:8]}:"
    if redis_url:
        env.update(worker_env(broker_url=redis_url, redis_prefix=prefix))
        env["IMGSEARCH_GATEWAY_REDIS_URL"] = redis_url
        env["IMGSEARCH_GATEWAY_REDIS_PREFIX"] = prefix + "gw:"
    else:
        env["IMGSEARCH_WORKERS_QUEUE"] = f"q-{uuid.uuid4().hex[:8]}"
    env.update(extra_env or {})
    admin_username, admin_password = "admin", secrets.token_urlsafe(12)
    stack = Stack(data_dir=data_dir, log_dir=log_dir, env=env, internal_token=token,
                  admin_username=admin_username, admin_password=admin_password)
    base = {**clean_environ(), **env}
    try:
        names = ["catalog", "index", "embedding"] + (["segmentation"] if segmentation else [])
        for name in names:
            stack.processes[name] = ServiceProcess(name, base, log_dir, port=ports[name])
        for name in names:  # start them all, then wait: the model loads meanwhile
            proc = stack.processes[name]
            log = proc.log_path.open("ab")
            proc.proc = subprocess.Popen(
                [sys.executable, "-m", "imgsearch.cli", "serve", name, "--host", "127.0.0.1",
                 "--port", str(proc.port)], cwd=Path(__file__).resolve().parents[2],
                env=proc.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
        for name in names:
            stack.processes[name].wait_ready(180)
        gw_env = {**base, "IMGSEARCH_GATEWAY_JWT_SECRET": secrets.token_urlsafe(48),
                  "IMGSEARCH_GATEWAY_ADMIN_USERNAME": admin_username,
                  "IMGSEARCH_GATEWAY_ADMIN_PASSWORD": admin_password,
                  # Every test client comes from 127.0.0.1: per-client limits fit one user,
                  # not a whole suite (callers testing the limits set their own).
                  "IMGSEARCH_GATEWAY_LOGIN_RATE_PER_MINUTE": "600",
                  "IMGSEARCH_GATEWAY_SEARCH_RATE_PER_MINUTE": "6000",
                  **(gateway_env or {})}
        stack.processes["gateway"] = ServiceProcess("gateway", gw_env, log_dir,
                                                    port=ports["gateway"]).start(60)
        if worker:
            stack.worker = WorkerProcess(base, log_dir, concurrency=2).start(90)
    except BaseException:
        logs = stack.logs()
        stack.stop()
        raise RuntimeError(f"the stack did not start:\n{logs}") from None
    return stack


@contextmanager
def running_stack(tmp: Path, **kwargs: Any) -> Iterator[Stack]:
    stack = start_stack(tmp, **kwargs)
    try:
        yield stack
    finally:
        stack.stop()
