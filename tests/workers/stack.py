"""The real services a worker talks to, as processes: catalog (MariaDB), index and embedding
(random ViT-S/14 weights at the smallest input, one patch: the tests prove the plumbing, not
the features), plus HTTP helpers to inspect them and a producer to enqueue tasks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from services.common.app import INTERNAL_TOKEN_HEADER
from services.common.queue import QueueSettings, make_producer, send_task
from services.common.settings import CommonSettings
from tests.helpers.procs import ServiceProcess
from tests.helpers.worker import WorkerProcess, worker_env


class Stack:
    def __init__(self, *, data_dir: Path, log_dir: Path, token: str, database_url: str,
                 broker_url: str, redis_prefix: str) -> None:
        self.data_dir = data_dir
        self.token = token
        base = {"IMGSEARCH_DATA_DIR": str(data_dir), "IMGSEARCH_INTERNAL_TOKEN": token,
                "IMGSEARCH_LOG_FORMAT": "text"}
        self.catalog = ServiceProcess("catalog", {**base, "IMGSEARCH_DATABASE_URL": database_url,
                                                  "IMGSEARCH_CATALOG_MIGRATE_ON_START": "true"},
                                      log_dir)
        self.index = ServiceProcess("index", base, log_dir)
        self.embedding = ServiceProcess("embedding", {
            **base, "IMGSEARCH_RANDOM_WEIGHTS": "1", "IMGSEARCH_EMBEDDING_MODEL": "dinov2_vits14",
            "IMGSEARCH_EMBEDDING_IMAGE_SIZE": "14", "IMGSEARCH_EMBEDDING_THREADS": "1"}, log_dir)
        self.env, self.producer = self.broker(broker_url, redis_prefix)

    def broker(self, broker_url: str, redis_prefix: str,
               extra: dict[str, str] | None = None) -> tuple[dict[str, str], Any]:
        """Worker environment and producer for these services on `broker_url` (a queue of
        its own); the caller closes the producer."""
        env = worker_env(broker_url=broker_url, redis_prefix=redis_prefix,
                         data_dir=self.data_dir, internal_token=self.token, extra={
                             "IMGSEARCH_WORKERS_CATALOG_URL": self.catalog.url,
                             "IMGSEARCH_WORKERS_INDEX_URL": self.index.url,
                             "IMGSEARCH_WORKERS_EMBEDDING_URL": self.embedding.url,
                             "IMGSEARCH_WORKERS_VISIBILITY_TIMEOUT_S": "5",
                             "IMGSEARCH_WORKERS_RETRY_BACKOFF_MAX_S": "2",
                             "IMGSEARCH_WORKERS_MAX_RETRIES": "30", **(extra or {})})
        settings = QueueSettings(broker_url=broker_url, redis_key_prefix=redis_prefix,
                                 queue=env["IMGSEARCH_WORKERS_QUEUE"])
        return env, make_producer(settings, CommonSettings(data_dir=self.data_dir))

    def start(self) -> Stack:
        for proc in (self.catalog, self.index, self.embedding):
            proc.start()
        return self

    def stop(self) -> None:
        self.producer.close()
        for proc in (self.embedding, self.index, self.catalog):
            proc.stop()

    def call(self, proc: ServiceProcess, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, proc.url + path, timeout=60,
                                 headers={INTERNAL_TOKEN_HEADER: self.token}, **kwargs)
        response.raise_for_status()
        return response.json()

    def new_job(self, kind: str, params: dict[str, Any] | None = None) -> int:
        job = self.call(self.catalog, "POST", "/v1/jobs",
                        json={"kind": kind, "total": 0, "params": params or {}})
        return int(job["id"])

    def job(self, job_id: int) -> dict[str, Any]:
        job: dict[str, Any] = self.call(self.catalog, "GET", f"/v1/jobs/{job_id}")
        return job

    def catalog_rows(self, status: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        while True:
            page = self.call(self.catalog, "GET", "/v1/images", params={
                "status": status, "limit": 100, "offset": len(rows), "order": "asc"})["images"]
            rows += page
            if len(page) < 100:
                return rows

    def catalog_ids(self, status: str) -> list[int]:
        return sorted(int(image["id"]) for image in self.catalog_rows(status))

    def index_ids(self) -> list[int]:
        ids: list[int] = []
        after: int | None = None
        while True:
            params: dict[str, Any] = {"limit": 500}
            if after is not None:
                params["after"] = after
            data = self.call(self.index, "GET", "/v1/ids", params=params)
            ids += [int(i) for i in data["ids"]]
            if data.get("next") is None or not data["ids"]:
                return ids
            after = int(data["next"])

    def present(self, ids: list[int]) -> set[int]:
        """Which of `ids` the index returns a vector for."""
        found: set[int] = set()
        for start in range(0, len(ids), 500):
            data = self.call(self.index, "POST", "/v1/vectors/get",
                             json={"ids": ids[start:start + 500]})
            found.update(int(i) for i in data["ids"])
        return found

    def worker(self, log_dir: Path, env: dict[str, str] | None = None,
               concurrency: int = 2) -> WorkerProcess:
        """A worker node of these services (not started). Mingle and gossip, which only
        synchronise several workers, are off: they add a second to every (re)start."""
        return WorkerProcess(env or self.env, log_dir, concurrency=concurrency,
                             extra_args=("--without-mingle", "--without-gossip"))

    def enqueue(self, name: str, kwargs: dict[str, Any], producer: Any = None) -> None:
        send_task(name, kwargs, producer=producer or self.producer)


@contextmanager
def running_stack(**kwargs: Any) -> Iterator[Stack]:
    stack = Stack(**kwargs)
    try:
        yield stack.start()
    finally:
        stack.stop()
