"""Search by an uploaded image, the results grid, the lightbox with the heatmap, more like
this, and the Chinese interface."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import picture, sent_forms

pytestmark = pytest.mark.e2e


def upload_query(page: Any, kind: str) -> None:
    page.get_by_test_id("file-input").set_input_files(
        files=[{"name": f"{kind}.png", "mimeType": "image/png", "buffer": picture(kind)}])


def body_id(card: Any) -> str:
    """The image id behind a result card (its thumbnail URL carries it)."""
    src: str = card.locator("img").get_attribute("src")
    return src.split("/images/")[1].split("/")[0]


def test_search_by_upload_shows_ranked_results(page: Any) -> None:
    page.goto("/")
    expect(page.get_by_test_id("random-weights-banner")).to_be_visible()
    with page.expect_response(lambda r: r.url.endswith("/api/v1/search")) as answer:
        upload_query(page, "red-disc")
    assert answer.value.status == 200
    body = answer.value.json()
    assert body["total"] >= 4
    results = page.get_by_test_id("result")
    expect(results).to_have_count(len(body["results"]))
    # Grid order and scores are the server's ranking.
    first = body["results"][0]
    expect(results.first.get_by_test_id("result-score")).to_have_text(f"{first['score']:.3f}")
    expect(results.first).to_contain_text(first["original_filename"])
    expect(results.first).to_contain_text("gallery")
    # Thumbnails really load (naturalWidth > 0), not just their <img> tags.
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=result] img')]"
        ".every(img => img.complete && img.naturalWidth > 0)")
    expect(page.get_by_test_id("query-image")).to_be_visible()
    assert page.console_errors == []


def test_lightbox_heatmap_and_more_like_this(page: Any) -> None:
    page.goto("/")
    with page.expect_response(lambda r: r.url.endswith("/api/v1/search")):
        upload_query(page, "blue-box")
    page.get_by_test_id("result").first.locator("button.thumb").click()
    lightbox = page.get_by_test_id("lightbox")
    expect(lightbox).to_be_visible()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=lightbox-image]').naturalWidth > 0")
    with page.expect_response(lambda r: r.url.endswith("/api/v1/heatmap")) as heat:
        page.get_by_test_id("heatmap-toggle").click()
    assert heat.value.status == 200, heat.value.text()
    grid = heat.value.json()["grid"]
    # The overlay canvas holds one pixel per patch.
    size = page.eval_on_selector("[data-testid=heatmap] canvas", "c => [c.height, c.width]")
    assert size == grid
    page.keyboard.press("Escape")
    expect(lightbox).to_have_count(0)

    chosen = page.get_by_test_id("result").nth(1)
    chosen_id = body_id(chosen)
    with page.expect_response(lambda r: r.url.endswith("/api/v1/search")) as again:
        chosen.get_by_test_id("more-like-this").click()
    assert again.value.status == 200
    sent = sent_forms(page, "/api/v1/search")[-1]
    assert sent["image_id"] == chosen_id and "file" not in sent
    expect(page.get_by_test_id("result").first).to_be_visible()


def test_k_pages_and_infinite_scroll(page: Any) -> None:
    page.goto("/")
    with page.expect_response(lambda r: r.url.endswith("/api/v1/search")) as first:
        upload_query(page, "green-tri")
    total = first.value.json()["total"]
    assert total >= 4
    # The controls are one click away, under the results' "Filters".
    page.get_by_test_id("filters-toggle").click()
    page.get_by_test_id("control-k").fill("2")
    page.get_by_test_id("control-k").dispatch_event("change")
    # Pages of two follow one another while the end of the grid is in view, until all are in.
    expect(page.get_by_test_id("result")).to_have_count(total)
    expect(page.get_by_test_id("load-more")).to_have_count(0)
    sent = sent_forms(page, "/api/v1/search")[1:]
    assert {form["k"] for form in sent} == {"2"}
    assert [int(form["offset"]) for form in sent] == list(range(0, total, 2))
    # Every image once.
    sources = page.eval_on_selector_all("[data-testid=result] img", "els => els.map(e => e.src)")
    assert len(set(sources)) == total
    # Unchanged controls (a blur's change event) do not start the search again.
    page.get_by_test_id("control-k").dispatch_event("change")
    page.wait_for_timeout(300)
    assert len(sent_forms(page, "/api/v1/search")) == len(sent) + 1


def test_chinese_when_the_browser_prefers_it(new_page: Any) -> None:
    page = new_page(locale="zh-CN")
    page.goto("/")
    expect(page.get_by_test_id("nav-sketch")).to_have_text("画板模式")
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    page.get_by_test_id("locale").select_option("en")
    expect(page.get_by_test_id("nav-sketch")).to_have_text("Sketch")
