"""The workers' embedding client over two real embedding processes behind one name (what
`docker compose up --scale embedding=2` gives: one name, two addresses): both replicas embed,
and when one is killed the other takes every request."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from services.common.http import ServiceClient
from services.workers.clients import EmbeddingApi
from tests.helpers.procs import ServiceProcess, free_port
from tests.workers.images import make_png

pytestmark = [pytest.mark.integration]


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[list[ServiceProcess], str]]:
    token = secrets.token_urlsafe(24)
    env = {"IMGSEARCH_DATA_DIR": str(tmp_path / "data"), "IMGSEARCH_INTERNAL_TOKEN": token,
           "IMGSEARCH_LOG_FORMAT": "text", "IMGSEARCH_RANDOM_WEIGHTS": "1",
           "IMGSEARCH_EMBEDDING_MODEL": "dinov2_vits14", "IMGSEARCH_EMBEDDING_IMAGE_SIZE": "14",
           "IMGSEARCH_EMBEDDING_THREADS": "1"}
    port = free_port()
    procs = [ServiceProcess("embedding", env, tmp_path, port=port, host=f"127.0.0.{i}")
             for i in (2, 3)]
    try:
        for proc in procs:
            proc.start()
        yield procs, token
    finally:
        for proc in procs:
            proc.stop()


def images_embedded(proc: ServiceProcess) -> float:
    import httpx

    text = httpx.get(proc.url + "/metrics", timeout=10).text
    match = re.search(r"^embedding_images_total (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_requests_spread_over_every_replica_and_survive_one_killed(
        replicas: tuple[list[ServiceProcess], str]) -> None:
    procs, token = replicas
    addresses = [proc.host for proc in procs]
    client = ServiceClient("embedding", f"http://embedding.replicas.test:{procs[0].port}", token,
                           resolver=lambda host, port: list(addresses), backoff_max=0.2)
    api = EmbeddingApi(client)
    images = [make_png(900 + i) for i in range(16)]
    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda data: api.embed([data]), images))
        assert all(vectors.shape == (1, 384) for _, vectors in results)
        counts = [images_embedded(proc) for proc in procs]
        assert sum(counts) == 16 and min(counts) >= 4, counts
        procs[0].kill()
        for data in images[:6]:
            _, vectors = api.embed([data])
            assert vectors.shape == (1, 384)
        assert images_embedded(procs[1]) == counts[1] + 6
    finally:
        client.close()
