"""Object search and heatmaps through the gateway: segmentation (random weights), the
masked crop or pooled patch tokens, the index and the catalog."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image, ImageDraw

from tests.gateway.conftest import files_of, png_bytes
from tests.helpers.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_segment_region_search_and_heatmap(stack: Stack) -> None:
    blobs = [png_bytes(777_000 + i, size=(160, 120)) for i in range(3)]
    prompts = json.dumps({"points": [{"x": 80, "y": 60, "label": 1}]})
    with stack.admin_client() as admin:
        body = admin.post("/api/v1/admin/images", files=files_of(blobs, "region")).json()
        assert stack.wait_job(admin, body["job_id"])["status"] == "succeeded"
        ids = [img["id"] for img in body["images"]]

        seg = admin.post("/api/v1/segment", files={"file": ("q.png", blobs[0])},
                         data={"prompts": prompts})
        assert seg.status_code == 200, seg.text
        mask = Image.open(io.BytesIO(base64.b64decode(seg.json()["mask_png_b64"])))
        assert mask.size == (160, 120)
        by_id = admin.post("/api/v1/segment", data={"image_id": str(ids[0]),
                                                    "prompts": prompts})
        assert by_id.status_code == 200
        assert by_id.json()["image_sha256"] == seg.json()["image_sha256"]

        for mode in ("crop", "pool"):
            page = admin.post("/api/v1/search/region", files={"file": ("q.png", blobs[0])},
                              data={"prompts": prompts, "mode": mode, "k": "200"})
            assert page.status_code == 200, page.text
            result = page.json()
            assert result["query"]["kind"] == "region"
            assert result["box"] and result["mask_png_b64"]
            assert set(ids) <= {hit["id"] for hit in result["results"]}

        outside = admin.post("/api/v1/segment", files={"file": ("q.png", blobs[0])},
                             data={"prompts": json.dumps({"points": [{"x": 999, "y": 5,
                                                                      "label": 1}]})})
        assert outside.status_code == 422
        assert outside.json()["error"]["code"] == "invalid_prompts"

        heat = admin.post("/api/v1/heatmap", data={"image_id": str(ids[1]),
                                                   "query_image_id": str(ids[0])})
        assert heat.status_code == 200, heat.text
        gh, gw = heat.json()["grid"]
        values = heat.json()["values"]
        assert len(values) == gh * gw and min(values) == 0.0 and max(values) == 1.0
        assert heat.json()["width"] == 160

        sketch = io.BytesIO()
        canvas = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
        ImageDraw.Draw(canvas).rectangle([50, 80, 250, 220], outline=(0, 0, 0, 255), width=6)
        canvas.save(sketch, format="PNG")
        page = admin.post("/api/v1/search/sketch", files={"file": ("s.png", sketch.getvalue())},
                          data={"k": "2"})
        assert page.status_code == 200, page.text
        assert page.json()["query"]["kind"] == "sketch" and len(page.json()["results"]) == 2
        blank = io.BytesIO()
        Image.new("RGB", (100, 100), "white").save(blank, format="PNG")
        empty = admin.post("/api/v1/search/sketch", files={"file": ("s.png", blank.getvalue())})
        assert empty.status_code == 422 and empty.json()["error"]["code"] == "empty_sketch"
