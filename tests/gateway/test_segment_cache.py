"""Later clicks through the gateway name the image by its hash (no upload, decoder only);
an image the segmentation service no longer holds is 409 image_not_cached; the gateway
itself reuses the cached encoder output for catalog images and the region search. The image
is encoded as it is chosen (/segment/prepare), a later click names the previous mask by its
selection id, cached images answer only the caller who sent them, and segmentation is shed
under load like search."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import files_of, png_bytes
from tests.helpers.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLICK = {"points": [{"x": 60, "y": 50, "label": 1}]}


def _runs(stack: Stack) -> tuple[int, int]:
    """(encoder passes, decoder passes) of the segmentation service so far."""
    with stack.internal("segmentation") as internal:
        info: dict[str, Any] = internal.get("/v1/info").json()
    return info["encoder_runs"], info["decoder_runs"]


def test_later_clicks_send_the_hash_not_the_image(stack: Stack) -> None:
    image = png_bytes(616_000, size=(160, 120))
    digest = hashlib.sha256(image).hexdigest()
    with stack.client() as client:
        first = client.post("/api/v1/segment", files={"file": ("q.png", image)},
                            data={"prompts": json.dumps(CLICK)})
        assert first.status_code == 200, first.text
        answer = first.json()
        assert answer["image_sha256"] == digest
        # Every part by default: the PNG, the RLE, the candidates, the logits.
        assert answer["mask_png_b64"] and answer["mask_rle"]["size"] == [120, 160]
        assert len(answer["candidates"]) == 2 and answer["low_res_mask_b64"]

        encoder, decoder = _runs(stack)
        later = {"points": [*CLICK["points"], {"x": 150, "y": 110, "label": 0}],
                 "mask_input_b64": answer["low_res_mask_b64"]}
        by_hash = client.post("/api/v1/segment", files={"prompts": (None, json.dumps(later))},
                              data={"image_sha256": digest, "outputs": "rle,low_res"})
        assert by_hash.status_code == 200, by_hash.text
        body = by_hash.json()
        assert body["encoder_cached"] is True and body["image_sha256"] == digest
        assert body["mask_png_b64"] is None and body["candidates"] is None
        assert body["mask_rle"]["size"] == [120, 160] and body["low_res_mask_b64"]
        assert _runs(stack) == (encoder, decoder + 1)

        # The same click with the bytes: the same mask.
        by_bytes = client.post("/api/v1/segment", files={"file": ("q.png", image)},
                               data={"prompts": json.dumps(later)})
        assert by_bytes.json()["mask_rle"] == body["mask_rle"]


def test_hash_errors(stack: Stack) -> None:
    image = png_bytes(616_001, size=(64, 48))
    box = json.dumps({"box": [4, 4, 40, 30]})
    with stack.client() as client:
        never = hashlib.sha256(b"an image nobody clicked").hexdigest()
        missing = client.post("/api/v1/segment", data={"image_sha256": never, "prompts": box})
        assert missing.status_code == 409
        assert missing.json()["error"]["code"] == "image_not_cached"
        assert missing.json()["error"]["detail"] == {"image_sha256": never}

        for bad in ("abc", "0" * 63, "x" * 64, "0" * 64 + "0"):
            response = client.post("/api/v1/segment", data={"image_sha256": bad,
                                                            "prompts": box})
            assert response.status_code == 422
            assert response.json()["error"]["code"] == "invalid_image_sha256"

        with_file = client.post("/api/v1/segment", files={"file": ("q.png", image)},
                                data={"image_sha256": never, "prompts": box})
        assert with_file.status_code == 422
        assert with_file.json()["error"]["code"] == "invalid_request"

        outputs = client.post("/api/v1/segment", files={"file": ("q.png", image)},
                              data={"prompts": box, "outputs": "rle,gif"})
        assert outputs.status_code == 422
        assert outputs.json()["error"]["code"] == "invalid_outputs"


def test_catalog_images_and_region_search_reuse_the_encoder(stack: Stack) -> None:
    blobs = [png_bytes(616_100 + i, size=(160, 120)) for i in range(2)]
    with stack.admin_client() as admin:
        body = admin.post("/api/v1/admin/images", files=files_of(blobs, "seg-cache")).json()
        assert stack.wait_job(admin, body["job_id"])["status"] == "succeeded"
        image_id = body["images"][0]["id"]

        # A gallery image nobody clicked yet: the gateway tries the hash, then sends the file.
        encoder, _ = _runs(stack)
        first = admin.post("/api/v1/segment", data={"image_id": str(image_id),
                                                    "prompts": json.dumps(CLICK)})
        assert first.status_code == 200, first.text
        assert first.json()["image_sha256"] == hashlib.sha256(blobs[0]).hexdigest()
        assert _runs(stack)[0] == encoder + 1
        again = admin.post("/api/v1/segment", data={"image_id": str(image_id),
                                                    "prompts": json.dumps(CLICK)})
        assert again.json()["encoder_cached"] is True
        assert again.json()["mask_rle"] == first.json()["mask_rle"]

        # The search after the clicks finds the encoder output by the file's hash.
        for mode in ("crop", "pool"):
            page = admin.post("/api/v1/search/region", files={"file": ("q.png", blobs[0])},
                              data={"prompts": json.dumps(CLICK), "mode": mode, "k": "5"})
            assert page.status_code == 200, page.text
            assert page.json()["mask_png_b64"] and page.json()["box"] == first.json()["box"]
        assert _runs(stack)[0] == encoder + 1
        # An image the service never saw is sent as bytes.
        page = admin.post("/api/v1/search/region", files={"file": ("q.png", blobs[1])},
                          data={"prompts": json.dumps(CLICK), "k": "5"})
        assert page.status_code == 200, page.text
        assert _runs(stack)[0] == encoder + 2


def _form_bytes(fields: dict[str, str]) -> int:
    """The size of a multipart body of these text fields, as httpx sends it."""
    request = httpx.Request("POST", "http://x/", files={k: (None, v) for k, v in fields.items()})
    return len(request.read())


def test_prepare_then_clicks_by_selection_in_a_few_bytes(stack: Stack) -> None:
    image = png_bytes(616_200, size=(320, 240))
    digest = hashlib.sha256(image).hexdigest()
    with stack.client() as client:
        encoder, _ = _runs(stack)
        ready = client.post("/api/v1/segment/prepare", files={"file": ("q.png", image)})
        assert ready.status_code == 200, ready.text
        assert ready.json()["image_sha256"] == digest and ready.json()["encoder_cached"] is False
        assert (ready.json()["width"], ready.json()["height"]) == (320, 240)
        assert _runs(stack)[0] == encoder + 1

        # The first click names the image: no upload, no encoder pass.
        click = {"points": [{"x": 160, "y": 120, "label": 1}]}
        first = client.post("/api/v1/segment", data={
            "image_sha256": digest, "prompts": json.dumps(click), "outputs": "rle"})
        assert first.status_code == 200, first.text
        assert first.json()["encoder_cached"] is True and first.json()["low_res_mask_b64"] is None
        selection = first.json()["selection_id"]
        # A later click names the previous mask instead of sending its 350 kB of logits.
        later = {"points": [*click["points"], {"x": 5, "y": 5, "label": 0}],
                 "selection_id": selection}
        fields = {"image_sha256": digest, "prompts": json.dumps(later), "outputs": "rle"}
        assert _form_bytes(fields) < 1_000
        second = client.post("/api/v1/segment", data=fields)
        assert second.status_code == 200, second.text
        assert second.json()["selection_id"] != selection
        assert _runs(stack)[0] == encoder + 1

        # The region search refines the same selection.
        page = client.post("/api/v1/search/region", files={"file": ("q.png", image)},
                           data={"prompts": json.dumps(later), "k": "3"})
        assert page.status_code == 200, page.text
        assert page.json()["box"] == second.json()["box"]
        assert _runs(stack)[0] == encoder + 1


def test_cached_images_are_scoped_to_who_sent_them(stack: Stack) -> None:
    image = png_bytes(616_300, size=(96, 80))
    digest = hashlib.sha256(image).hexdigest()
    box = json.dumps({"box": [4, 4, 60, 50]})
    with stack.admin_client() as admin, stack.client() as anonymous:
        mine = admin.post("/api/v1/segment", files={"file": ("q.png", image)},
                          data={"prompts": box, "outputs": "rle"})
        assert mine.status_code == 200, mine.text
        assert admin.post("/api/v1/segment", data={"image_sha256": digest, "prompts": box}
                          ).json()["encoder_cached"] is True
        # Another caller who knows the hash gets neither the mask nor the selection.
        theirs = anonymous.post("/api/v1/segment", data={"image_sha256": digest,
                                                        "prompts": box})
        assert (theirs.status_code, theirs.json()["error"]["code"]) == (409, "image_not_cached")
        stolen = anonymous.post("/api/v1/segment", data={
            "image_sha256": digest,
            "prompts": json.dumps({"box": [4, 4, 60, 50],
                                   "selection_id": mine.json()["selection_id"]})})
        assert stolen.status_code == 409
        # With the image itself, the cached encoder output serves them too (no second pass).
        encoder, _ = _runs(stack)
        sent = anonymous.post("/api/v1/segment", files={"file": ("q.png", image)},
                              data={"prompts": box})
        assert sent.status_code == 200 and sent.json()["encoder_cached"] is True
        assert _runs(stack)[0] == encoder


async def _burst(stack: Stack, blobs: list[bytes]) -> tuple[collections.Counter[str], int]:
    outcomes: collections.Counter[str] = collections.Counter()
    async with httpx.AsyncClient(base_url=stack.url, timeout=120,
                                 limits=httpx.Limits(max_connections=len(blobs) + 2)) as client:
        async def one(blob: bytes) -> None:
            response = await client.post("/api/v1/segment/prepare",
                                         files={"file": ("q.png", blob)})
            retry = "+retry-after" if response.headers.get("Retry-After") else ""
            outcomes[f"{response.status_code}{retry}"] += 1

        async def search() -> int:
            await asyncio.sleep(0.5)  # while the encodings hold every segmentation slot
            response = await client.post("/api/v1/search", files={"file": ("q.png", blobs[0])})
            return response.status_code

        *_, status = await asyncio.gather(*(one(blob) for blob in blobs), search())
    return outcomes, status


def test_segmentation_is_shed_like_search(stack: Stack) -> None:
    """Past the segmentation capacity (2 running + 8 queued by default), clicks and
    encodings answer 503 with Retry-After at once instead of queueing behind the model; a
    search meanwhile is not queued behind them."""
    blobs = [png_bytes(616_400 + i, size=(64, 48)) for i in range(24)]
    outcomes, search = asyncio.run(_burst(stack, blobs))
    assert outcomes["200"] > 0, outcomes
    assert outcomes["503+retry-after"] > 0, outcomes
    assert set(outcomes) <= {"200", "503+retry-after"}, outcomes
    assert search == 200
