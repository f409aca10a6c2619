"""The index service as a real process over HTTP: the contract, its errors, staging, and
SIGKILL during a stream of concurrent writes of vectors and tags (every acknowledged write
survives)."""

from __future__ import annotations

import base64
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.helpers.procs import ServiceProcess
from tests.index.conftest import stored
from tests.index.data import gaussian_mixture

pytestmark = pytest.mark.integration

DIM = 16
MODEL = "dinov2_vits14:crash"


def _env(data_dir: Path, token: str, index_type: str) -> dict[str, str]:
    return {
        "IMGSEARCH_INTERNAL_TOKEN": token, "IMGSEARCH_DATA_DIR": str(data_dir),
        # IVF trains at 78 vectors (2 lists), early in the crash test's stream of writes.
        "IMGSEARCH_INDEX_TYPE": index_type, "IMGSEARCH_INDEX_TRAIN_MIN": "60",
        "IMGSEARCH_INDEX_IVF_NLIST": "2", "IMGSEARCH_INDEX_PQ_M": "4",
        "IMGSEARCH_INDEX_PQ_NBITS": "5", "IMGSEARCH_INDEX_SNAPSHOT_EVERY": "40",
        "IMGSEARCH_INDEX_FILTER_EXACT_MAX": "50", "IMGSEARCH_INDEX_HNSW_EF_CONSTRUCTION": "40",
        "IMGSEARCH_INDEX_MAINTENANCE_INTERVAL_S": "0.2", "IMGSEARCH_LOG_FORMAT": "text",
        "IMGSEARCH_INDEX_THREADS": "1",  # no OpenMP spinning on 2 shared cores
    }


@pytest.fixture
def service(data_dir: Path, internal_token: str, tmp_path: Path) -> Iterator[ServiceProcess]:
    proc = ServiceProcess("index", _env(data_dir, internal_token, "flat"), tmp_path).start()
    yield proc
    proc.stop()


def _client(proc: ServiceProcess, token: str) -> httpx.Client:
    return httpx.Client(base_url=proc.url, headers={"X-Internal-Token": token}, timeout=30)


def test_contract_and_errors(service: ServiceProcess, internal_token: str) -> None:
    c = _client(service, internal_token)
    assert httpx.put(service.url + "/v1/vectors", json={"ids": [1], "vectors": [[1.0]],
                     "model": MODEL}).json()["error"]["code"] == "invalid_internal_token"
    xb = gaussian_mixture(100, DIM, seed=3)
    b64 = base64.b64encode(xb[:50].astype("<f4").tobytes()).decode()
    r = c.put("/v1/vectors", json={"ids": list(range(50)), "vectors_b64": b64, "dim": DIM,
                                   "model": MODEL})
    assert r.status_code == 200 and r.json() == {"upserted": 50, "count": 50}
    r = c.put("/v1/vectors", json={"ids": list(range(50, 100)), "vectors": xb[50:].tolist(),
                                   "model": MODEL})
    assert r.json()["count"] == 100
    r = c.post("/v1/search", json={"vectors": xb[:2].tolist(), "k": 3})
    hits = r.json()["results"]
    assert [h["ids"][0] for h in hits] == [0, 1] and len(hits[0]["scores"]) == 3
    r = c.post("/v1/search", json={"vectors": xb[:1].tolist(), "k": 5, "allowed_ids": [7, 9]})
    assert sorted(r.json()["results"][0]["ids"]) == [7, 9]
    r = c.put("/v1/tags", json={"ids": [7, 9, 11], "tags": [["Beach"], ["beach", "sea"], []]})
    assert r.json() == {"updated": 3}
    r = c.post("/v1/search", json={"vectors": xb[:1].tolist(), "k": 5, "tags": ["BEACH "]})
    assert sorted(r.json()["results"][0]["ids"]) == [7, 9]
    assert c.post("/v1/tags/get", json={"ids": [9, 7, 11]}).json() == {
        "ids": [9, 7, 11], "tags": [["beach", "sea"], ["beach"], []]}
    assert c.get("/v1/tags").json() == {"tags": {"beach": 2, "sea": 1}}
    r = c.put("/v1/tags", json={"ids": [7], "tags": [["a"], ["b"]]})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_ids")
    errors = [
        (c.put("/v1/vectors", json={"ids": [1], "vectors": [[0.1] * DIM], "model": "other"}),
         409, "model_mismatch"),
        (c.put("/v1/vectors", json={"ids": [1], "vectors": [[0.1] * 3], "model": MODEL}),
         422, "dimension_mismatch"),
        (c.put("/v1/vectors", json={"ids": [1, 2], "vectors": [[0.1] * DIM], "model": MODEL}),
         422, "invalid_vectors"),
        (c.put("/v1/vectors", json={"ids": [-4], "vectors": [[0.1] * DIM], "model": MODEL}),
         422, "invalid_ids"),
        (c.put("/v1/vectors", json={"ids": [1], "vectors_b64": "@@", "dim": DIM,
                                    "model": MODEL}), 422, "invalid_vectors"),
        (c.post("/v1/search", json={"vectors_b64": base64.b64encode(
            np.full(DIM, np.nan, "<f4").tobytes()).decode(), "dim": DIM}), 422,
         "invalid_vectors"),
        (c.post("/v1/search", json={"vectors": [[0.1] * DIM], "model": "other"}), 409,
         "model_mismatch"),
        (c.post("/v1/rebuild", json={"type": "kd_tree"}), 422, "invalid_request"),
        (c.post("/v1/rebuild", json={"type": "hnsw", "bogus": 1}), 422, "invalid_index_type"),
        (c.post("/v1/staging/commit"), 404, "staging_not_found"),
    ]
    for response, status, code in errors:
        assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert c.get("/v1/stats").json()["count"] == 100  # no bad request changed anything
    r = c.request("DELETE", "/v1/vectors", json={"ids": [0, 1, 5000]})
    assert r.json() == {"removed": 2, "count": 98}
    r = c.post("/v1/vectors/get", json={"ids": [3, 0, 2]})
    assert r.json()["ids"] == [3, 2]
    np.testing.assert_allclose(r.json()["vectors"][0], xb[3], rtol=1e-6)
    r = c.get("/v1/ids", params={"after": 90, "limit": 5})
    assert r.json() == {"ids": [91, 92, 93, 94, 95], "next": 95}
    r = c.post("/v1/rebuild", json={"type": "hnsw", "hnsw_ef_search": 32})
    assert r.json()["type"] == "hnsw" and r.json()["params"]["hnsw_ef_search"] == 32
    r = c.post("/v1/snapshot")
    assert r.json()["count"] == 98 and Path(r.json()["path"]).is_dir()


def test_staging_fills_mirrors_commits_and_survives_restart(
        service: ServiceProcess, internal_token: str) -> None:
    c = _client(service, internal_token)
    old = gaussian_mixture(20, DIM, seed=4)
    c.put("/v1/vectors", json={"ids": list(range(20)), "vectors": old.tolist(),
                               "model": "old:model"}).raise_for_status()
    new = gaussian_mixture(20, 8, seed=5)
    r = c.post("/v1/staging", json={"model": "new:model", "dim": 8, "type": "hnsw"})
    assert r.status_code == 201 and r.json()["type"] == "hnsw"
    r = c.put("/v1/staging/vectors", json={"ids": list(range(15)), "vectors": new[:15].tolist(),
                                           "model": "new:model"})
    assert r.json()["count"] == 15
    r = c.put("/v1/staging/vectors", json={"ids": [1], "vectors": [[0.1] * DIM],
                                           "model": "new:model"})
    assert r.json()["error"]["code"] == "dimension_mismatch"
    c.request("DELETE", "/v1/vectors", json={"ids": [3]}).raise_for_status()  # mirrored to staging
    stats = c.get("/v1/stats").json()
    assert stats["model"] == "old:model" and stats["count"] == 19
    assert stats["staging"]["count"] == 14 and stats["staging"]["model"] == "new:model"
    service.kill()  # staging files are durable too
    service.start()
    assert c.get("/v1/stats").json()["staging"]["count"] == 14
    r = c.post("/v1/staging/commit")
    assert r.json()["model"] == "new:model" and r.json()["count"] == 14
    service.kill()
    service.start()
    stats = c.get("/v1/stats").json()
    assert (stats["model"], stats["dim"], stats["count"], stats["staging"]) == (
        "new:model", 8, 14, None)
    r = c.post("/v1/search", json={"vectors": new[5:6].tolist(), "k": 1})
    assert r.json()["results"][0]["ids"] == [5]
    c.post("/v1/staging", json={"model": "x", "dim": 4}).raise_for_status()
    assert c.delete("/v1/staging").json() == {"dropped": True}
    assert c.get("/v1/stats").json()["staging"] is None


class _Writer(threading.Thread):
    """Upserts and removes on its own id range until the server dies; records what was
    acknowledged, in order, and the one write in flight when it died."""

    def __init__(self, url: str, token: str, base: int, seed: int) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=url, headers={"X-Internal-Token": token},
                                   timeout=10)
        self.base, self.rng = base, random.Random(seed)
        self.acked: dict[int, list[float] | None] = {}
        self.tags: dict[int, list[str]] = {}  # acknowledged tags of each id
        self.in_flight: set[int] = set()
        self.count = 0

    def run(self) -> None:
        while True:
            ids = [self.base + self.rng.randrange(60) for _ in range(self.rng.randint(1, 4))]
            ids = list(dict.fromkeys(ids))
            self.in_flight = set(ids)
            tags = [sorted(self.rng.sample(["red", "sea", "cat"], self.rng.randint(0, 2)))
                    for _ in ids]
            try:
                roll = self.rng.random()
                if roll < 0.55:
                    vecs = np.random.default_rng([self.base, self.count]).standard_normal(
                        (len(ids), DIM)).astype(np.float32)
                    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)  # self is the best hit
                    r = self.client.put("/v1/vectors", json={
                        "ids": ids, "vectors": vecs.tolist(), "model": MODEL, "tags": tags})
                    r.raise_for_status()
                    self.acked.update(zip(ids, vecs.tolist(), strict=True))
                    self.tags.update(zip(ids, tags, strict=True))
                elif roll < 0.7:
                    r = self.client.put("/v1/tags", json={"ids": ids, "tags": tags})
                    r.raise_for_status()
                    self.tags.update(zip(ids, tags, strict=True))
                else:
                    r = self.client.request("DELETE", "/v1/vectors", json={"ids": ids})
                    r.raise_for_status()
                    self.acked.update(dict.fromkeys(ids))
                    self.tags.update({i: [] for i in ids})
            except httpx.HTTPError:
                return
            self.in_flight = set()
            self.count += 1


@pytest.mark.slow
@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf_sq8", "ivf_pq"])
def test_sigkill_during_concurrent_writes_loses_no_acknowledged_write(
        index_type: str, data_dir: Path, internal_token: str, tmp_path: Path) -> None:
    proc = ServiceProcess("index", _env(data_dir, internal_token, index_type), tmp_path)
    proc.start()
    try:
        writers = [_Writer(proc.url, internal_token, 1000 * (w + 1), w) for w in range(4)]
        for w in writers:
            w.start()
        # Kill once enough writes landed to cross snapshots, IVF training and rotations.
        deadline = threading.Event()
        while sum(w.count for w in writers) < 200 and not deadline.wait(0.05):
            pass
        proc.kill()
        for w in writers:
            w.join(15)
        proc.start()
        c = _client(proc, internal_token)
        for w in writers:
            settled = {i: v for i, v in w.acked.items() if i not in w.in_flight}
            present = [i for i, v in settled.items() if v is not None]
            absent = [i for i, v in settled.items() if v is None]
            got = c.post("/v1/vectors/get", json={"ids": present + absent}).json()
            assert got["ids"] == present, "an acknowledged write is lost"
            np.testing.assert_allclose(
                np.asarray(got["vectors"]),
                stored(index_type, np.asarray([settled[i] for i in present])), rtol=1e-6)
            tagged = [i for i in w.tags if i not in w.in_flight]
            held = c.post("/v1/tags/get", json={"ids": tagged}).json()["tags"]
            assert held == [w.tags[i] for i in tagged], "an acknowledged tag change is lost"
        # Filtered search by tag returns the live ids holding it, and only those.
        red = {i for w in writers for i, t in w.tags.items()
               if "red" in t and i not in w.in_flight and w.acked.get(i) is not None}
        unsure = {i for w in writers for i in w.in_flight}
        hits = c.post("/v1/search", json={"vectors": [[1.0] * DIM], "k": 250,
                                          "tags": ["red"]}).json()["results"][0]["ids"]
        assert red <= set(hits) <= red | unsure
        # Every live vector is found by search (also for approximate types).
        stats = c.get("/v1/stats").json()
        assert stats["type"] == index_type and stats["trained"], stats
        ids = c.get("/v1/ids", params={"limit": 100000}).json()["ids"]
        vectors = c.post("/v1/vectors/get", json={"ids": ids[:20]}).json()["vectors"]
        # k=5 re-ranks 20 candidates: IVF-PQ's 4 x 5-bit codes of random 16-d vectors are
        # too coarse to put each vector in its own top 4, not in its top 20.
        hits = c.post("/v1/search", json={"vectors": vectors, "k": 5}).json()["results"]
        assert [h["ids"][0] for h in hits] == ids[:20]
    finally:
        proc.stop()
