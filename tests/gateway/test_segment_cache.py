"""Later clicks through the gateway name the image by its hash (no upload, decoder only);
an image the segmentation service no longer holds is 409 image_not_cached; the gateway
itself reuses the cached encoder output for catalog images and the region search."""

from __future__ import annotations

import hashlib
import json
from typing import Any

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
