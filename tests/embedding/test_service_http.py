"""The embedding service as a real process: embedding, batching, errors, auth, load shedding."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.embedding.service_helpers import flat_png, patch_tokens, png, vectors
from tests.helpers.procs import ServiceProcess

pytestmark = pytest.mark.integration

TOKEN = secrets.token_urlsafe(24)
MAX_BYTES = 300_000
MAX_PIXELS = 1_000_000
SIZE = 112  # short side the model sees: small, so the suite stays quick


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        "IMGSEARCH_RANDOM_WEIGHTS": "1",
        "IMGSEARCH_EMBEDDING_MODEL": "dinov2_vits14",
        "IMGSEARCH_EMBEDDING_WEIGHTS": "",
        "IMGSEARCH_INTERNAL_TOKEN": TOKEN,
        "IMGSEARCH_DATA_DIR": str(data_dir),
        "IMGSEARCH_LOG_FORMAT": "text",
    }
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    root = tmp_path_factory.mktemp("embedding")
    proc = ServiceProcess("embedding", _env(
        root / "data", IMGSEARCH_EMBEDDING_MAX_WAIT_MS="150", IMGSEARCH_EMBEDDING_MAX_BATCH="8",
        IMGSEARCH_EMBEDDING_MAX_IMAGE_BYTES=str(MAX_BYTES),
        IMGSEARCH_EMBEDDING_MAX_IMAGE_PIXELS=str(MAX_PIXELS),
        IMGSEARCH_EMBEDDING_IMAGE_SIZE=str(SIZE), IMGSEARCH_EMBEDDING_THREADS="1"), root)
    proc.start()
    yield proc
    proc.stop()


def _post(service: ServiceProcess, files: list[bytes] | None = None, raw: bytes | None = None,
          params: dict[str, str] | None = None, token: str | None = TOKEN) -> httpx.Response:
    headers = {"X-Internal-Token": token} if token is not None else {}
    if raw is not None:
        headers["Content-Type"] = "application/octet-stream"
        return httpx.post(service.url + "/v1/embed", content=raw, headers=headers,
                          params=params, timeout=120)
    multipart = [("file", (f"img{i}.png", data, "image/png"))
                 for i, data in enumerate(files or [])]
    return httpx.post(service.url + "/v1/embed", files=multipart, headers=headers,
                      params=params, timeout=120)


def _embed_one(service: ServiceProcess, data: bytes) -> np.ndarray:
    response = _post(service, raw=data)
    assert response.status_code == 200, response.text
    return vectors(response.json())[0]


def test_info_reports_random_weights(service: ServiceProcess) -> None:
    response = httpx.get(service.url + "/v1/info", headers={"X-Internal-Token": TOKEN})
    assert response.status_code == 200
    info = response.json()
    assert info["random_weights"] is True
    assert info["architecture"] == "dinov2_vits14"
    assert info["dim"] == 384 and info["patch_size"] == 14 and info["num_registers"] == 0
    assert re.fullmatch(r"dinov2_vits14:[0-9a-f]{12}", info["model"])
    assert info["preprocessing"] == {"mode": "resize_short_side", "image_size": SIZE,
                                     "mean": [0.485, 0.456, 0.406],
                                     "std": [0.229, 0.224, 0.225]}
    assert len(info["weights_sha256"]) == 64
    assert info["model"].split(":")[1] == info["weights_sha256"][:12]


def test_embed_one_raw_body(service: ServiceProcess) -> None:
    response = _post(service, raw=png(seed=1))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dim"] == 384 and body["count"] == 1
    assert body["model"].startswith("dinov2_vits14:")
    vec = vectors(body)
    assert vec.shape == (1, 384)
    assert np.linalg.norm(vec, axis=1) == pytest.approx(1.0, abs=1e-5)
    assert "patch_tokens" not in body and "vectors_b64" not in body
    # CLS alone unless more is asked for: the other tokens skip the last block
    assert "mean_pooled" not in body


def test_mean_pooled_on_request(service: ServiceProcess) -> None:
    data = png(seed=1)
    body = _post(service, raw=data, params={"tokens": "mean"}).json()
    assert "patch_tokens" not in body
    assert np.linalg.norm(np.asarray(body["mean_pooled"]), axis=1) == pytest.approx(1, abs=1e-5)
    # the same CLS features both ways (the CLS-only last block and the full one)
    np.testing.assert_allclose(vectors(body), vectors(_post(service, raw=data).json()),
                               atol=1e-5)
    assert _post(service, raw=data, params={"tokens": "all"}).status_code == 422


def test_embed_many_keeps_order_and_is_deterministic(service: ServiceProcess) -> None:
    images = [png(seed=s) for s in (2, 3, 4)] + [png(300, 200, seed=5)]
    response = _post(service, images)
    assert response.status_code == 200, response.text
    many = vectors(response.json())
    assert many.shape == (4, 384)
    assert np.linalg.norm(many, axis=1) == pytest.approx(1.0, abs=1e-5)
    singles = np.stack([_embed_one(service, data) for data in images])
    np.testing.assert_allclose(many, singles, atol=1e-5)
    # different images, different vectors; the same image twice, the same vector up to the
    # last bits (rows at different places of one matrix product may round differently,
    # depending on the BLAS kernels); the same request again, exactly the same vectors
    assert float(many[0] @ many[1]) < 0.99999
    twice = vectors(_post(service, [images[0], images[0]]).json())
    np.testing.assert_allclose(twice[0], twice[1], rtol=0, atol=1e-6)
    again = vectors(_post(service, [images[0], images[0]]).json())
    np.testing.assert_array_equal(again, twice)


def test_b64_format_matches_json(service: ServiceProcess) -> None:
    data = png(seed=6)
    as_json = vectors(_post(service, [data]).json())
    body = _post(service, [data], params={"format": "b64"}).json()
    assert "vectors" not in body
    np.testing.assert_array_equal(vectors(body), as_json)


def test_patch_tokens(service: ServiceProcess) -> None:
    # 308x224: resize_short_side to 112 -> 154x112 pixels -> an 8x11 grid
    response = _post(service, [png(308, 224, seed=7), png(224, 224, seed=8)],
                     params={"tokens": "patch"})
    assert response.status_code == 200, response.text
    body = response.json()
    tokens = body["patch_tokens"]
    assert [t["grid"] for t in tokens] == [[8, 11], [8, 8]]
    first = patch_tokens(tokens[0], 384)
    assert np.linalg.norm(first, axis=-1) == pytest.approx(1.0, abs=1e-5)
    # the mean-pooled patches come along (the mean of the tokens before their normalisation)
    assert np.linalg.norm(np.asarray(body["mean_pooled"]), axis=1) == pytest.approx(1, abs=1e-5)


def test_concurrent_requests_are_batched_and_match_single_calls(
        service: ServiceProcess) -> None:
    images = [png(seed=100 + i) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda data: _post(service, raw=data), images))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    together = np.stack([vectors(r.json())[0] for r in responses])
    metrics = httpx.get(service.url + "/metrics").text
    count = _metric(metrics, "embedding_batch_size_count")
    singles = _metric(metrics, 'embedding_batch_size_bucket{le="1.0"}')
    assert count > singles, "no model call ever had more than one image"
    assert "embedding_queue_depth" in metrics and "embedding_inference_seconds_count" in metrics
    one_by_one = np.stack([_embed_one(service, data) for data in images])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match is not None, f"metric {name} missing"
    return float(match.group(1))


def _truncated_png() -> bytes:
    data = png(seed=9)
    return data[: len(data) // 2]


@pytest.mark.parametrize(("payload", "status", "code"), [
    (b"definitely not an image", 415, "not_an_image"),
    (b"", 400, "empty_image"),
    ("truncated", 400, "truncated_image"),
    ("too_many_pixels", 413, "image_too_large"),
    ("too_many_bytes", 413, "payload_too_large"),
])
@pytest.mark.parametrize("transport", ["raw", "multipart"])
def test_bad_input_gets_its_code_and_the_service_keeps_serving(
        service: ServiceProcess, payload: bytes | str, status: int, code: str,
        transport: str) -> None:
    if payload == "truncated":
        payload = _truncated_png()
    elif payload == "too_many_pixels":
        payload = flat_png(1100, 1000)
        assert len(payload) < MAX_BYTES
    elif payload == "too_many_bytes":
        payload = np.random.default_rng(0).bytes(MAX_BYTES + 1)
    assert isinstance(payload, bytes)
    if transport == "raw":
        response = _post(service, raw=payload)
    else:
        response = _post(service, [png(seed=10), payload])
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    if transport == "multipart" and code != "payload_too_large":
        assert error["detail"]["index"] == 1
    assert _embed_one(service, png(seed=11)).shape == (384,)


def test_request_without_image_is_invalid(service: ServiceProcess) -> None:
    response = httpx.post(service.url + "/v1/embed", data={"other": "x"},
                          files=[("notfile", ("a.png", png(), "image/png"))],
                          headers={"X-Internal-Token": TOKEN})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"
    response = _post(service, params={"format": "xml"}, raw=png())
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


def test_too_many_files_is_invalid(service: ServiceProcess) -> None:
    response = _post(service, [b"x"] * 65)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("token", [None, "forged-token-of-enough-length"])
def test_internal_token_required(service: ServiceProcess, token: str | None) -> None:
    response = _post(service, raw=png(), token=token)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_internal_token"
    headers = {"X-Internal-Token": token} if token else {}
    response = httpx.get(service.url + "/v1/info", headers=headers)
    assert response.status_code == 401


def test_ops_routes(service: ServiceProcess) -> None:
    assert httpx.get(service.url + "/healthz").status_code == 200
    ready = httpx.get(service.url + "/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["model"] is True


def test_full_queue_answers_503_with_retry_after(tmp_path: Path) -> None:
    proc = ServiceProcess("embedding", _env(
        tmp_path / "data", IMGSEARCH_EMBEDDING_QUEUE_SIZE="1", IMGSEARCH_EMBEDDING_MAX_BATCH="1",
        IMGSEARCH_EMBEDDING_MAX_WAIT_MS="0", IMGSEARCH_EMBEDDING_IMAGE_SIZE="336",
        IMGSEARCH_EMBEDDING_THREADS="1"), tmp_path)
    proc.start()
    try:
        data = png(336, 336, seed=12)
        with ThreadPoolExecutor(10) as pool:
            responses = list(pool.map(lambda _: _post(proc, raw=data), range(10)))
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) <= {200, 503}, statuses
        refused = [r for r in responses if r.status_code == 503]
        assert refused, "10 concurrent requests never filled a queue of 1"
        assert 200 in statuses
        for r in refused:
            assert r.json()["error"]["code"] == "overloaded"
            assert int(r.headers["Retry-After"]) >= 1
        assert _post(proc, raw=data).status_code == 200
        metrics = httpx.get(proc.url + "/metrics").text
        assert _metric(metrics, "embedding_rejected_total") == len(refused)
    finally:
        proc.stop()


def test_no_weights_refuses_to_start_with_instructions(tmp_path: Path) -> None:
    env = _env(tmp_path / "data")
    env.pop("IMGSEARCH_RANDOM_WEIGHTS")
    proc = ServiceProcess("embedding", {**env, "IMGSEARCH_RANDOM_WEIGHTS": "0",
                                        "IMGSEARCH_EMBEDDING_DOWNLOAD": "0"}, tmp_path)
    with pytest.raises(RuntimeError) as info:
        proc.start(timeout=60)
    assert proc.proc is not None and proc.proc.returncode != 0
    log = proc.log_path.read_text()
    assert "imgsearch weights download dinov2_vits14" in log
    assert "IMGSEARCH_EMBEDDING_WEIGHTS" in log
    assert "exited with" in str(info.value)


def test_first_start_downloads_the_weights(tmp_path: Path) -> None:
    """The deployment's first start: no weights on disk, the service fetches them itself."""
    import hashlib

    from services.embedding.engine import Dinov2Model
    from tests.embedding.test_weights import _torch_zip
    from tests.segmentation.fileserver import Script, serve_file

    model = Dinov2Model.random("dinov2_vits14", seed=3, threads=1)
    source = tmp_path / "official.pth"  # as Meta publishes it: a torch zip, official names
    _torch_zip(source, model.state_dict())
    model.close()
    payload = source.read_bytes()
    env = _env(tmp_path / "data")
    env.pop("IMGSEARCH_RANDOM_WEIGHTS")
    with serve_file(Script(payload=payload)) as url:
        proc = ServiceProcess("embedding", {
            **env, "IMGSEARCH_RANDOM_WEIGHTS": "0",
            "IMGSEARCH_EMBEDDING_WEIGHTS_BASE_URL": url + "?path="}, tmp_path)
        try:
            proc.start(timeout=120)
            info = httpx.get(proc.url + "/v1/info", headers={"X-Internal-Token": TOKEN}).json()
            assert info["random_weights"] is False
        finally:
            proc.stop()
    dest = tmp_path / "data" / "models" / "dinov2_vits14.pth"
    digest = hashlib.sha256(payload).hexdigest()
    assert dest.read_bytes() == payload
    assert (dest.parent / "dinov2_vits14.pth.sha256").read_text().split()[0] == digest


def test_offline_first_start_says_what_to_do(tmp_path: Path) -> None:
    env = _env(tmp_path / "data")
    env.pop("IMGSEARCH_RANDOM_WEIGHTS")
    proc = ServiceProcess("embedding", {
        **env, "IMGSEARCH_RANDOM_WEIGHTS": "0", "IMGSEARCH_EMBEDDING_DOWNLOAD_ATTEMPTS": "1",
        "IMGSEARCH_EMBEDDING_WEIGHTS_BASE_URL": "http://127.0.0.1:9/dinov2"}, tmp_path)
    with pytest.raises(RuntimeError):
        proc.start(timeout=60)
    log = proc.log_path.read_text()
    assert "the download failed: cannot reach http://127.0.0.1:9/dinov2/" in log
    assert "IMGSEARCH_RANDOM_WEIGHTS=1" in log and "IMGSEARCH_EMBEDDING_WEIGHTS" in log


def test_invalid_weights_file_refuses_to_start(tmp_path: Path) -> None:
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    proc = ServiceProcess("embedding", _env(tmp_path / "data",
                                            IMGSEARCH_EMBEDDING_WEIGHTS=str(bad)), tmp_path)
    with pytest.raises(RuntimeError):
        proc.start(timeout=60)
    assert proc.proc is not None and proc.proc.returncode != 0
    assert "broken.safetensors" in proc.log_path.read_text()
