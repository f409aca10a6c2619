"""Object selection refined click by click: the gateway passes `mask_input_b64` (the previous
answer's low-res mask) and `multimask` through to the segmentation service."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from tests.gateway.conftest import png_bytes
from tests.helpers.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_second_click_refines_the_previous_mask(stack: Stack) -> None:
    image = png_bytes(515_000, size=(160, 120))
    first_click = {"points": [{"x": 60, "y": 50, "label": 1}]}
    with stack.client() as client:
        first = client.post("/api/v1/segment", files={"file": ("q.png", image)},
                            data={"prompts": json.dumps(first_click)})
        assert first.status_code == 200, first.text
        answer = first.json()
        low_res = np.frombuffer(base64.b64decode(answer["low_res_mask_b64"]), dtype="<f4")
        assert low_res.size == 256 * 256
        assert (answer["width"], answer["height"]) == (160, 120)

        second_click = {"points": [*first_click["points"], {"x": 120, "y": 90, "label": 0}],
                        "mask_input_b64": answer["low_res_mask_b64"]}
        second = client.post("/api/v1/segment", files={"file": ("q.png", image)},
                             data={"prompts": json.dumps(second_click)})
        assert second.status_code == 200, second.text
        assert second.json()["image_sha256"] == answer["image_sha256"]
        assert second.json()["low_res_mask_b64"]
        # Two points and a mask give one mask unless multimask asks for the alternatives.
        assert second.json()["candidates"] == []
        several = client.post("/api/v1/segment", files={"file": ("q.png", image)},
                              data={"prompts": json.dumps({**second_click,
                                                           "multimask": True})})
        assert several.status_code == 200, several.text
        assert len(several.json()["candidates"]) == 2

        # The mask reaches the segmentation service, which checks it.
        bad = client.post("/api/v1/segment", files={"file": ("q.png", image)},
                          data={"prompts": json.dumps({**second_click,
                                                       "mask_input_b64": "AAAA"})})
        assert bad.status_code == 422
        assert bad.json()["error"]["code"] == "invalid_prompts"

        page = client.post("/api/v1/search/region", files={"file": ("q.png", image)},
                           data={"prompts": json.dumps(second_click), "k": "3"})
        assert page.status_code == 200, page.text
        assert page.json()["query"]["kind"] == "region"
