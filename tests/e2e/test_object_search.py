"""Click-to-segment: a click on the query image shows the mask over it, Alt+click refines,
a drag draws a box, and "search this object" runs the region search."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import sent_forms
from tests.e2e.test_search import upload_query

pytestmark = pytest.mark.e2e

COVERED = """c => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data
  let n = 0
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++
  return n
}"""


def last_prompts(page: Any) -> dict[str, Any]:
    prompts: dict[str, Any] = json.loads(sent_forms(page, "/api/v1/segment")[-1]["prompts"])
    return prompts


def test_click_shows_mask_and_region_search(page: Any) -> None:
    page.goto("/")
    # The first click waits for nothing: on a loaded machine it can come before the image's
    # encoding has answered, and then it carries the file. Here it comes after.
    with page.expect_response(lambda r: r.url.endswith("/api/v1/segment/prepare")), \
            page.expect_response(lambda r: r.url.endswith("/api/v1/search")):
        upload_query(page, "orange-disc")
    overlay = page.get_by_test_id("segment-overlay")
    expect(overlay).to_be_visible()
    assert page.eval_on_selector("[data-testid=segment-overlay]", COVERED) == 0

    box = overlay.bounding_box()
    with page.expect_response(lambda r: r.url.endswith("/api/v1/segment")) as seg:
        overlay.click(position={"x": box["width"] / 2, "y": box["height"] / 2})
    assert seg.value.status == 200, seg.value.text()
    first = sent_forms(page, "/api/v1/segment")[-1]
    # The image went once, as it was chosen (/segment/prepare); the click names it.
    assert "file" not in first and len(first["image_sha256"]) == 64
    # The web app draws the mask from the RLE; the server keeps the selection.
    assert first["outputs"] == "rle"
    answer = seg.value.json()
    assert answer["mask_png_b64"] is None and answer["mask_rle"]["size"] == [240, 320]
    prompts = last_prompts(page)
    # Image pixels (the picture is 320x240), not screen pixels.
    point = prompts["points"][0]
    assert point["label"] == 1
    assert abs(point["x"] - 160) <= 3 and abs(point["y"] - 120) <= 3
    expect(page.get_by_test_id("mask-score")).to_be_visible()
    # The mask preview is painted over the image (plus the click marker).
    assert page.eval_on_selector("[data-testid=segment-overlay]", COVERED) > 200

    with page.expect_response(lambda r: r.url.endswith("/api/v1/segment")) as later:
        overlay.click(position={"x": 10, "y": 10}, modifiers=["Alt"])
    points = last_prompts(page)["points"]
    assert [p["label"] for p in points] == [1, 0]
    # Later clicks name the image by its hash and the mask by its selection id.
    sent = sent_forms(page, "/api/v1/segment")[-1]
    assert "file" not in sent and sent["image_sha256"] == answer["image_sha256"]
    assert json.loads(sent["prompts"])["selection_id"] == answer["selection_id"]
    assert later.value.status == 200 and later.value.json()["encoder_cached"] is True

    with page.expect_request(lambda r: r.url.endswith("/api/v1/segment")):
        page.mouse.move(box["x"] + 20, box["y"] + 20)
        page.mouse.down()
        page.mouse.move(box["x"] + 80, box["y"] + 60, steps=5)
        page.mouse.move(box["x"] + box["width"] - 20, box["y"] + box["height"] - 20, steps=5)
        page.mouse.up()
    drawn = last_prompts(page)["box"]
    assert drawn[0] < drawn[2] and drawn[1] < drawn[3]

    page.get_by_test_id("region-mode").select_option("pool")
    with page.expect_response(lambda r: r.url.endswith("/api/v1/search/region")) as region:
        page.get_by_test_id("search-object").click()
    assert region.value.status == 200, region.value.text()
    sent = sent_forms(page, "/api/v1/search/region")[-1]
    assert sent["mode"] == "pool" and json.loads(sent["prompts"])["box"] == drawn
    assert "mask_input_b64" not in json.loads(sent["prompts"])
    assert sent["file"]["file"] == "orange-disc.png"
    body = region.value.json()
    assert body["results"] and body["mask_png_b64"]
    expect(page.get_by_test_id("result")).to_have_count(len(body["results"]))
    assert page.console_errors == []


def test_touch_tap_segments(new_page: Any) -> None:
    page = new_page(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    page.goto("/")
    with page.expect_response(lambda r: r.url.endswith("/api/v1/search")):
        upload_query(page, "red-disc")
    page.get_by_test_id("sheet-toggle").tap()
    overlay = page.get_by_test_id("segment-overlay")
    box = overlay.bounding_box()
    with page.expect_response(lambda r: r.url.endswith("/api/v1/segment")) as seg:
        overlay.tap(position={"x": box["width"] / 2, "y": box["height"] / 2})
    assert seg.value.status == 200
    expect(page.get_by_test_id("mask-score")).to_be_visible()
