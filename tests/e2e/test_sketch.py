"""The sketch board: draw, undo, search by sketch."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import sent_forms

pytestmark = pytest.mark.e2e


def stroke(page: Any, canvas: Any, points: list[tuple[float, float]]) -> None:
    box = canvas.bounding_box()
    x0, y0 = points[0]
    page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=4)
    page.mouse.up()


INK = """c => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data
  let n = 0
  for (let i = 0; i < d.length; i += 4) if (d[i] < 128) n++
  return n
}"""


def test_sketch_search(page: Any) -> None:
    page.goto("/sketch")
    canvas = page.get_by_test_id("sketch-canvas")
    expect(canvas).to_be_visible()
    stroke(page, canvas, [(0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8), (0.2, 0.2)])
    first_ink = page.eval_on_selector("[data-testid=sketch-canvas]", INK)
    assert first_ink > 500
    stroke(page, canvas, [(0.3, 0.5), (0.7, 0.5)])
    assert page.eval_on_selector("[data-testid=sketch-canvas]", INK) > first_ink + 300
    page.get_by_test_id("sketch-undo").click()
    # Undo redraws whole strokes; drawn live they were segments (antialiasing differs a bit).
    assert abs(page.eval_on_selector("[data-testid=sketch-canvas]", INK) - first_ink) < 200

    with page.expect_response(lambda r: r.url.endswith("/api/v1/search/sketch")) as answer:
        page.get_by_test_id("sketch-search").click()
    assert answer.value.status == 200, answer.value.text()
    body = answer.value.json()
    assert body["query"]["kind"] == "sketch"
    sent = sent_forms(page, "/api/v1/search/sketch")[-1]["file"]
    assert sent["type"] == "image/png" and sent["size"] > 100
    expect(page.get_by_test_id("result")).to_have_count(len(body["results"]))
    assert body["results"]
    # The count says "at least" when the server has not counted every match.
    count = page.get_by_test_id("result-count")
    if body["total_exact"]:
        expect(count).to_have_text(f"{body['total']} results")
    else:
        expect(count).to_have_text(f"At least {body['total']} results")

    page.get_by_test_id("sketch-clear").click()
    assert page.eval_on_selector("[data-testid=sketch-canvas]", INK) == 0
    assert page.console_errors == []


def test_ctrl_z_after_mouse_drawing_and_the_empty_hint(page: Any) -> None:
    page.goto("/sketch")
    canvas = page.get_by_test_id("sketch-canvas")
    page.get_by_test_id("sketch-search").click()
    hint = page.get_by_role("status").filter(has_text="Draw something first.")
    expect(hint).to_be_visible()
    # Drawing makes the hint go away.
    stroke(page, canvas, [(0.2, 0.2), (0.8, 0.8)])
    expect(hint).to_have_count(0)
    first_ink = page.eval_on_selector("[data-testid=sketch-canvas]", INK)
    stroke(page, canvas, [(0.2, 0.8), (0.8, 0.2)])
    assert page.eval_on_selector("[data-testid=sketch-canvas]", INK) > first_ink + 100
    # The canvas was reached with the mouse only (never with Tab): Ctrl+Z undoes.
    page.keyboard.press("Control+z")
    assert abs(page.eval_on_selector("[data-testid=sketch-canvas]", INK) - first_ink) < 200
    page.keyboard.press("Control+z")
    assert page.eval_on_selector("[data-testid=sketch-canvas]", INK) == 0
