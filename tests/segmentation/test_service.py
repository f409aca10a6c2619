"""The segmentation service as a real process: a random checkpoint loaded through the real
loading path, mask geometry, the encoder cache, prompt and image validation, the token."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from services.common.masks import decode_png, decode_rle, mask_box
from services.common.storage import image_key
from tests.helpers.procs import ServiceProcess
from tests.segmentation.conftest import png_bytes

pytestmark = [pytest.mark.torch, pytest.mark.integration, pytest.mark.slow]

EMBEDDING_BYTES = 256 * 64 * 64 * 4  # one cached image: (1, 256, 64, 64) float32
Start = Callable[..., tuple[ServiceProcess, str, Path]]


class Client:
    def __init__(self, proc: ServiceProcess, token: str) -> None:
        self.http = httpx.Client(base_url=proc.url, timeout=120,
                                 headers={"X-Internal-Token": token})
        self.token = token
        self.data_dir = Path()
        self.catalog_url = ""

    def segment(self, image: bytes | None, prompts: Any, **form: str) -> httpx.Response:
        files = {"file": ("x.png", image, "image/png")} if image is not None else None
        data = dict(form)
        if prompts is not None:
            data["prompts"] = prompts if isinstance(prompts, str) else json.dumps(prompts)
        return self.http.post("/v1/segment", files=files, data=data)

    def info(self) -> dict[str, Any]:
        response = self.http.get("/v1/info")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module")
def service(start_segmentation: Start, sam_checkpoint: Path) -> tuple[Client, ServiceProcess]:
    proc, token, data_dir = start_segmentation(
        with_catalog=True,
        IMGSEARCH_SEGMENTATION_WEIGHTS=str(sam_checkpoint),
        # Room for two cached images, not three.
        IMGSEARCH_SEGMENTATION_CACHE_BYTES=str(int(EMBEDDING_BYTES * 2.5)),
        IMGSEARCH_SEGMENTATION_MAX_IMAGE_BYTES="300000",
        IMGSEARCH_SEGMENTATION_MAX_IMAGE_PIXELS="1000000",
    )
    client = Client(proc, token)
    client.data_dir = data_dir
    client.catalog_url = proc.env["IMGSEARCH_SEGMENTATION_CATALOG_URL"]
    return client, proc


def _check_geometry(mask: np.ndarray, box: list[int] | None, width: int, height: int) -> None:
    assert mask.shape == (height, width) and mask.dtype == bool
    assert box == mask_box(mask)
    if box is not None:
        x0, y0, x1, y1 = box
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert not mask[:, :x0].any() and not mask[:, x1:].any()
        assert not mask[:y0].any() and not mask[y1:].any()


def test_info_reports_the_checkpoint(service: tuple[Client, ServiceProcess],
                                     sam_checkpoint: Path) -> None:
    client, _ = service
    info = client.info()
    digest = hashlib.sha256(sam_checkpoint.read_bytes()).hexdigest()
    assert info["random_weights"] is False
    assert info["model"] == f"mobile_sam_vit_t:{digest[:12]}"
    assert info["weights_sha256"] == digest
    assert info["threads"] == 2 and info["decoder_threads"] == 2
    assert info["cache"]["max_bytes"] == int(EMBEDDING_BYTES * 2.5)


def test_mask_geometry_and_encodings(service: tuple[Client, ServiceProcess]) -> None:
    client, _ = service
    image = png_bytes(96, 64, seed=1)
    response = client.segment(image, {"points": [{"x": 48, "y": 32, "label": 1}]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["width"], body["height"]) == (96, 64)
    assert body["image_sha256"] == hashlib.sha256(image).hexdigest()
    mask = decode_png(body["mask_png_b64"])
    assert (decode_rle(body["mask_rle"]) == mask).all()
    assert body["mask_rle"]["size"] == [64, 96]
    _check_geometry(mask, body["box"], 96, 64)
    # One point: the other two candidate masks of the multimask output, best score first.
    assert len(body["candidates"]) == 2
    scores = [body["score"]] + [c["score"] for c in body["candidates"]]
    assert scores == sorted(scores, reverse=True)
    for candidate in body["candidates"]:
        _check_geometry(decode_rle(candidate["mask_rle"]), candidate["box"], 96, 64)
    low_res = np.frombuffer(base64.b64decode(body["low_res_mask_b64"]), dtype="<f4")
    assert low_res.size == 256 * 256 and np.isfinite(low_res).all()
    # The PNG is an ordinary 8-bit grayscale image of the image's size.
    with Image.open(io.BytesIO(base64.b64decode(body["mask_png_b64"]))) as png:
        assert png.size == (96, 64) and png.mode == "L"


def test_a_further_click_does_not_run_the_encoder(service: tuple[Client, ServiceProcess]) -> None:
    client, proc = service
    image = png_bytes(80, 60, seed=2)
    before = client.info()
    first = client.segment(image, {"points": [{"x": 40, "y": 30, "label": 1}]})
    assert first.status_code == 200, first.text
    assert first.json()["encoder_cached"] is False
    middle = client.info()
    assert middle["encoder_runs"] == before["encoder_runs"] + 1
    # More clicks, a box and the previous mask: the decoder only.
    second = client.segment(image, {
        "points": [{"x": 40, "y": 30, "label": 1}, {"x": 5, "y": 5, "label": 0}],
        "box": [10, 10, 70, 50],
        "mask_input_b64": first.json()["low_res_mask_b64"],
    })
    assert second.status_code == 200, second.text
    assert second.json()["encoder_cached"] is True
    assert second.json()["candidates"] == []  # several prompts: one mask
    _check_geometry(decode_png(second.json()["mask_png_b64"]), second.json()["box"], 80, 60)
    after = client.info()
    assert after["encoder_runs"] == middle["encoder_runs"]
    assert after["decoder_runs"] == before["decoder_runs"] + 2
    assert after["cache"]["hits"] >= before["cache"]["hits"] + 1
    metrics = httpx.get(proc.url + "/metrics").text
    assert 'segmentation_clicks_total{encoder_cached="true"}' in metrics


def test_the_cache_evicts_by_bytes(service: tuple[Client, ServiceProcess]) -> None:
    client, _ = service
    # The first two are the images of the tests above (cached already when they ran).
    images = [png_bytes(96, 64, seed=1), png_bytes(80, 60, seed=2), png_bytes(40, 30, seed=3)]
    for image in images:
        response = client.segment(image, {"box": [5, 5, 30, 25]})
        assert response.status_code == 200, response.text
    cache = client.info()["cache"]
    assert cache["entries"] == 2
    assert cache["bytes"] == 2 * EMBEDDING_BYTES <= cache["max_bytes"]
    assert cache["evictions"] >= 1
    # The two most recent are cached; the least recently used one is not any more.
    runs = client.info()["encoder_runs"]
    assert client.segment(images[2], {"box": [5, 5, 30, 25]}).json()["encoder_cached"] is True
    assert client.segment(images[1], {"box": [5, 5, 30, 25]}).json()["encoder_cached"] is True
    assert client.segment(images[0], {"box": [5, 5, 30, 25]}).json()["encoder_cached"] is False
    assert client.info()["encoder_runs"] == runs + 1


@pytest.mark.parametrize("prompts", [
    None,
    {},
    {"points": []},
    "{not json",
    {"points": [{"x": 97, "y": 10, "label": 1}]},
    {"points": [{"x": 10, "y": -0.5, "label": 1}]},
    {"points": [{"x": 10, "y": 10, "label": 2}]},
    {"box": [50, 10, 20, 40]},
    {"box": [0, 0, 96, 65]},
    {"box": [10, 10, 20, 40], "mask_input_b64": "AAAA"},
])
def test_invalid_prompts_are_422(service: tuple[Client, ServiceProcess], prompts: Any) -> None:
    client, _ = service
    runs = client.info()["encoder_runs"]
    response = client.segment(png_bytes(96, 64, seed=1), prompts)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_prompts"
    assert client.info()["encoder_runs"] == runs


def _big_header_png() -> bytes:
    # A 2000x2000 image (4M pixels, over the 1M limit) that compresses to a few KB.
    buffer = io.BytesIO()
    Image.new("L", (2000, 2000)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(("make", "status", "code"), [
    (lambda: b"", 400, "empty_image"),
    (lambda: b"this is not an image at all", 415, "not_an_image"),
    (lambda: png_bytes(64, 48)[:200], 400, "truncated_image"),
    (_big_header_png, 413, "image_too_large"),
    (lambda: b"\x89PNG" + b"\0" * 400_000, 413, "payload_too_large"),
])
def test_bad_images_are_4xx(service: tuple[Client, ServiceProcess], make: Callable[[], bytes],
                            status: int, code: str) -> None:
    client, _ = service
    response = client.segment(make(), {"points": [{"x": 1, "y": 1, "label": 1}]})
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert client.http.get("/healthz").status_code == 200


def test_one_image_source_exactly(service: tuple[Client, ServiceProcess]) -> None:
    client, _ = service
    prompts = {"points": [{"x": 1, "y": 1, "label": 1}]}
    image = png_bytes(20, 20)
    digest = hashlib.sha256(image).hexdigest()
    for response in (client.segment(None, prompts),
                     client.segment(image, prompts, image_id="3"),
                     client.segment(image, prompts, image_sha256=digest),
                     client.segment(None, prompts, image_id="3", image_sha256=digest)):
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid_request"


def test_the_internal_token_is_required(service: tuple[Client, ServiceProcess]) -> None:
    _, proc = service
    for headers in ({}, {"X-Internal-Token": "forged-token-of-some-length"}):
        response = httpx.post(proc.url + "/v1/segment", headers=headers,
                              files={"file": ("x.png", png_bytes(20, 20), "image/png")},
                              data={"prompts": '{"box": [0, 0, 10, 10]}'})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_internal_token"
        assert httpx.get(proc.url + "/v1/info", headers=headers).status_code == 401


def _catalog_image(client: Client, image: bytes, *, store: bool = True) -> int:
    """Register `image` in the real catalog (and store its file as the gateway would)."""
    sha = hashlib.sha256(image).hexdigest()
    key = image_key(sha, "png")
    if store:
        path = client.data_dir / "images" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image)
    with Image.open(io.BytesIO(image)) as decoded:
        width, height = decoded.size
    response = httpx.post(client.catalog_url + "/v1/images", timeout=30,
                          headers={"X-Internal-Token": client.token},
                          json={"sha256": sha, "original_filename": "x.png", "storage_key": key,
                                "mime": "image/png", "width": width, "height": height,
                                "bytes": len(image)})
    assert response.status_code in (200, 201), response.text
    image_id: int = response.json()["image"]["id"]
    return image_id


def test_segment_a_catalog_image_by_id(service: tuple[Client, ServiceProcess]) -> None:
    client, _ = service
    image = png_bytes(96, 64, seed=1)  # the image of the geometry test: same content hash
    image_id = _catalog_image(client, image)
    prompts = {"points": [{"x": 48, "y": 32, "label": 1}]}
    by_id = client.segment(None, prompts, image_id=str(image_id))
    assert by_id.status_code == 200, by_id.text
    by_file = client.segment(image, prompts)
    assert by_id.json()["image_sha256"] == hashlib.sha256(image).hexdigest()
    assert by_id.json()["mask_rle"] == by_file.json()["mask_rle"]
    assert by_file.json()["encoder_cached"] is True


def test_catalog_image_errors(service: tuple[Client, ServiceProcess]) -> None:
    client, _ = service
    prompts = {"points": [{"x": 1, "y": 1, "label": 1}]}
    unknown = client.segment(None, prompts, image_id="987654")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "image_not_found")
    fileless = _catalog_image(client, png_bytes(30, 20, seed=99), store=False)
    missing = client.segment(None, prompts, image_id=str(fileless))
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "image_file_missing")
    deleting = _catalog_image(client, png_bytes(30, 20, seed=98))
    response = httpx.post(f"{client.catalog_url}/v1/images/{deleting}/transition", timeout=30,
                          headers={"X-Internal-Token": client.token},
                          json={"from": "pending", "to": "deleting"})
    assert response.status_code == 200, response.text
    gone = client.segment(None, prompts, image_id=str(deleting))
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "image_not_found")


def test_a_later_click_by_hash_sends_no_image(service: tuple[Client, ServiceProcess]) -> None:
    client, _ = service
    image = png_bytes(72, 48, seed=11)
    digest = hashlib.sha256(image).hexdigest()
    first = client.segment(image, {"points": [{"x": 36, "y": 24, "label": 1}]})
    assert first.status_code == 200, first.text
    assert first.json()["image_sha256"] == digest
    before = client.info()
    later_prompts = {"points": [{"x": 36, "y": 24, "label": 1}, {"x": 3, "y": 3, "label": 0}],
                     "mask_input_b64": first.json()["low_res_mask_b64"]}
    # Upper case is the same digest.
    later = client.segment(None, later_prompts, image_sha256=digest.upper(),
                           outputs="rle,low_res")
    assert later.status_code == 200, later.text
    body = later.json()
    assert body["encoder_cached"] is True and body["image_sha256"] == digest
    assert (body["width"], body["height"]) == (72, 48)
    assert body["mask_png_b64"] is None and body["candidates"] is None
    _check_geometry(decode_rle(body["mask_rle"]), body["box"], 72, 48)
    after = client.info()
    assert after["encoder_runs"] == before["encoder_runs"]
    assert after["decoder_runs"] == before["decoder_runs"] + 1
    # The same click with the bytes gives the same mask and logits.
    by_bytes = client.segment(image, later_prompts).json()
    assert by_bytes["mask_rle"] == body["mask_rle"]
    assert by_bytes["low_res_mask_b64"] == body["low_res_mask_b64"]
    # The image's size comes from the cache: prompts are checked against it.
    outside = client.segment(None, {"points": [{"x": 73, "y": 5, "label": 1}]},
                             image_sha256=digest)
    assert (outside.status_code, outside.json()["error"]["code"]) == (422, "invalid_prompts")


def test_a_hash_not_cached_is_409(service: tuple[Client, ServiceProcess]) -> None:
    client, _ = service
    prompts = {"box": [2, 2, 20, 14]}
    never = hashlib.sha256(b"an image this service never saw").hexdigest()
    before = client.info()
    response = client.segment(None, prompts, image_sha256=never)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "image_not_cached"
    assert error["detail"] == {"image_sha256": never}
    # Evicted: the cache holds two images; two others push this one out.
    image = png_bytes(24, 16, seed=21)
    digest = hashlib.sha256(image).hexdigest()
    assert client.segment(image, prompts).status_code == 200
    for seed in (22, 23):
        assert client.segment(png_bytes(24, 16, seed=seed), prompts).status_code == 200
    evicted = client.segment(None, prompts, image_sha256=digest)
    assert (evicted.status_code, evicted.json()["error"]["code"]) == (409, "image_not_cached")
    # The client sends the bytes once more, and the hash works again.
    again = client.segment(image, prompts)
    assert again.status_code == 200 and again.json()["encoder_cached"] is False
    by_hash = client.segment(None, prompts, image_sha256=digest)
    assert by_hash.status_code == 200 and by_hash.json()["encoder_cached"] is True
    after = client.info()
    assert after["encoder_runs"] == before["encoder_runs"] + 4  # three images, one twice


@pytest.mark.parametrize("value", ["", "abc", "0" * 63, "0" * 65, "z" * 64, "../" + "0" * 61])
def test_a_malformed_hash_is_422(service: tuple[Client, ServiceProcess], value: str) -> None:
    client, _ = service
    response = client.segment(None, {"box": [2, 2, 20, 14]}, image_sha256=value)
    assert response.status_code == 422, response.text
    # An empty field counts as absent: then no image is given at all.
    code = "invalid_request" if value == "" else "invalid_image_sha256"
    assert response.json()["error"]["code"] == code


def test_outputs_leave_out_what_is_not_asked(service: tuple[Client, ServiceProcess]) -> None:
    client, _ = service
    image = png_bytes(96, 64, seed=1)
    prompts = {"points": [{"x": 48, "y": 32, "label": 1}]}  # one point: three masks
    full = client.segment(image, prompts).json()
    optional = {"png": "mask_png_b64", "rle": "mask_rle", "candidates": "candidates",
                "low_res": "low_res_mask_b64"}
    assert all(full[key] is not None for key in optional.values())
    for outputs in ("png", "rle", "candidates", "low_res", "png,rle", "none"):
        response = client.segment(image, prompts, outputs=outputs)
        assert response.status_code == 200, response.text
        body = response.json()
        asked = set(outputs.split(",")) - {"none"}
        for name, key in optional.items():
            assert body[key] == (full[key] if name in asked else None), (outputs, key)
        assert (body["box"], body["score"]) == (full["box"], full["score"])
    unknown = client.segment(image, prompts, outputs="rle,jpeg")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (422, "invalid_outputs")
    assert unknown.json()["error"]["detail"]["unknown"] == ["jpeg"]


def test_selection_ids_scopes_and_encode_ahead(service: tuple[Client, ServiceProcess]) -> None:
    client, _ = service
    image = png_bytes(64, 40, seed=31)
    digest = hashlib.sha256(image).hexdigest()
    before = client.info()
    # Encoding ahead of the first click (the query image was just chosen).
    ahead = client.http.post("/v1/encode", files={"file": ("x.png", image, "image/png")},
                             data={"scope": "user:ann"})
    assert ahead.status_code == 200, ahead.text
    assert ahead.json() | {"model": None} == {
        "image_sha256": digest, "width": 64, "height": 40, "encoder_cached": False,
        "model": None}
    first_prompts = {"points": [{"x": 32, "y": 20, "label": 1}]}
    first = client.segment(None, first_prompts, image_sha256=digest, scope="user:ann")
    assert first.status_code == 200, first.text
    assert first.json()["encoder_cached"] is True
    assert client.info()["encoder_runs"] == before["encoder_runs"] + 1
    selection = first.json()["selection_id"]
    assert isinstance(selection, str) and len(selection) >= 16

    # A later click names the previous mask: the same answer as sending its logits back.
    points = first_prompts["points"] + [{"x": 2, "y": 2, "label": 0}]
    by_id = client.segment(None, {"points": points, "selection_id": selection},
                           image_sha256=digest, scope="user:ann", outputs="rle,low_res")
    by_logits = client.segment(None, {"points": points,
                                      "mask_input_b64": first.json()["low_res_mask_b64"]},
                               image_sha256=digest, scope="user:ann", outputs="rle,low_res")
    assert by_id.status_code == 200, by_id.text
    assert by_id.json()["mask_rle"] == by_logits.json()["mask_rle"]
    assert by_id.json()["low_res_mask_b64"] == by_logits.json()["low_res_mask_b64"]
    both = client.segment(None, {"points": points, "selection_id": selection,
                                 "mask_input_b64": first.json()["low_res_mask_b64"]},
                          image_sha256=digest, scope="user:ann")
    assert (both.status_code, both.json()["error"]["code"]) == (422, "invalid_prompts")

    # Another scope knows the hash but never sent the image: as if it were not cached.
    other = client.segment(None, first_prompts, image_sha256=digest, scope="ip:10.0.0.9")
    assert (other.status_code, other.json()["error"]["code"]) == (409, "image_not_cached")
    # Once it sends the bytes it may use the hash; another scope's selection stays its own.
    assert client.segment(image, first_prompts, scope="ip:10.0.0.9").status_code == 200
    stolen = client.segment(None, {"points": points, "selection_id": selection},
                            image_sha256=digest, scope="ip:10.0.0.9")
    assert (stolen.status_code, stolen.json()["error"]["code"]) == (409, "selection_expired")
    unknown = client.segment(None, {"points": points, "selection_id": "x" * 22},
                             image_sha256=digest, scope="user:ann")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (409, "selection_expired")
    assert client.info()["encoder_runs"] == before["encoder_runs"] + 1
