"""The search page as a new user meets it: results first at desktop and phone sizes, nothing
stale after "New query image", bad files refused with a translated sentence, dialogs above
the header, the query image encoded as it is chosen, clicks of a few bytes, the query in the
URL."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import sent_forms
from tests.e2e.test_search import upload_query

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


def phone_page(new_page: Any, **options: Any) -> Any:
    return new_page(viewport=PHONE, is_mobile=True, has_touch=True, **options)


def search_by_upload(page: Any, kind: str = "red-disc") -> dict[str, Any]:
    page.goto("/")
    with page.expect_response(lambda r: r.url.endswith("/api/v1/search")) as answer:
        upload_query(page, kind)
    assert answer.value.status == 200, answer.value.text()
    body: dict[str, Any] = answer.value.json()
    expect(page.get_by_test_id("result")).to_have_count(len(body["results"]))
    return body


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_the_first_result_is_in_view_after_a_search(new_page: Any, size: str) -> None:
    page = new_page(viewport=DESKTOP) if size == "desktop" else phone_page(new_page)
    search_by_upload(page)
    first = page.get_by_test_id("result").first
    box = first.bounding_box()
    viewport = page.viewport_size
    assert box is not None
    # The whole first card, without scrolling.
    assert box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"], box
    assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], box
    query = page.get_by_test_id("query-image").bounding_box()
    if size == "desktop":
        # The query beside the results, not above them.
        assert query["x"] + query["width"] <= box["x"]
    else:
        # A compact bar; the object tools open as a sheet, with touch words in the help.
        assert query["height"] <= 80
        page.get_by_test_id("sheet-toggle").click()
        expect(page.get_by_test_id("search-object")).to_be_visible()
        help_text = page.locator(".object-tools .help").inner_text()
        assert "right-click" not in help_text and "Alt" not in help_text
        assert "Tap" in help_text
    assert page.console_errors == []


def test_new_query_image_clears_the_old_results(page: Any) -> None:
    search_by_upload(page)
    expect(page.get_by_test_id("result-count")).to_be_visible()
    page.get_by_test_id("new-query").click()
    expect(page.get_by_test_id("dropzone")).to_be_visible()
    for stale in ("result", "result-count", "took", "no-results", "search-error",
                  "query-image"):
        expect(page.get_by_test_id(stale)).to_have_count(0)
    assert "q=" not in page.url


@pytest.mark.parametrize(("name", "content", "english", "chinese"), [
    ("holiday.jpg", b"This is a text file, not a photo.\n", "That file is not an image",
     "该文件不是图片"),
    ("empty.jpg", b"", "That file is empty.", "该文件是空的。"),
])
def test_a_bad_file_gets_a_sentence_and_nothing_else(
        new_page: Any, name: str, content: bytes, english: str, chinese: str) -> None:
    for locale, sentence in (("en-US", english), ("zh-CN", chinese)):
        page = new_page(locale=locale)
        page.goto("/")
        page.get_by_test_id("file-input").set_input_files(
            files=[{"name": name, "mimeType": "image/jpeg", "buffer": content}])
        expect(page.get_by_test_id("input-error")).to_contain_text(sentence)
        # No broken image, no object toolbar, no contradictory "no matches", no request.
        for absent in ("query-image", "segment-overlay", "search-object", "no-results",
                       "result-count"):
            expect(page.get_by_test_id(absent)).to_have_count(0)
        page.wait_for_timeout(300)
        assert sent_forms(page, "/api/v1/search") == []
        assert sent_forms(page, "/api/v1/segment/prepare") == []


ELEMENT_AT = """([x, y]) => {
  const el = document.elementFromPoint(x, y)
  return el ? (el.closest('[data-testid]')?.dataset.testid || el.className || el.tagName) : null
}"""


def test_dialogs_cover_the_sticky_header(new_page: Any) -> None:
    for viewport in (DESKTOP, PHONE):
        page = new_page(viewport=viewport)
        search_by_upload(page, "blue-box")
        nav = page.get_by_test_id("nav-sketch").bounding_box()
        centre = [nav["x"] + nav["width"] / 2, nav["y"] + nav["height"] / 2]
        assert page.evaluate(ELEMENT_AT, centre) == "nav-sketch"
        page.get_by_test_id("result").first.locator("button.thumb").click()
        lightbox = page.get_by_test_id("lightbox")
        expect(lightbox).to_be_visible()
        # On a phone the dialog keeps a margin from the screen's top edge.
        assert lightbox.bounding_box()["y"] >= 8
        # The header is under the backdrop: a click there lands on the backdrop (which
        # closes the dialog), never on the navigation behind it.
        assert page.evaluate(ELEMENT_AT, centre) != "nav-sketch"
        url = page.url
        page.mouse.click(*centre)
        expect(lightbox).to_have_count(0)
        assert page.url == url


def test_the_image_is_encoded_as_it_is_chosen_and_clicks_are_small(page: Any) -> None:
    page.goto("/")
    with page.expect_response(lambda r: r.url.endswith("/api/v1/segment/prepare")) as ready:
        upload_query(page, "orange-disc")
    # The choice itself started the encoding, before any click.
    assert ready.value.status == 200, ready.value.text()
    prepared = ready.value.json()
    assert sent_forms(page, "/api/v1/segment") == []
    assert sent_forms(page, "/api/v1/segment/prepare")[0]["file"]["file"] == "orange-disc.png"
    expect(page.get_by_test_id("segment-preparing")).to_have_count(0)

    overlay = page.get_by_test_id("segment-overlay")
    box = overlay.bounding_box()
    with page.expect_response(lambda r: r.url.endswith("/api/v1/segment")) as first:
        overlay.click(position={"x": box["width"] / 2, "y": box["height"] / 2})
    assert first.value.status == 200, first.value.text()
    # The click did not need the encoder: the prepared encoding served it, no image was sent.
    assert first.value.json()["encoder_cached"] is True
    sent = sent_forms(page, "/api/v1/segment")[-1]
    assert "file" not in sent and sent["image_sha256"] == prepared["image_sha256"]

    with page.expect_request(lambda r: r.url.endswith("/api/v1/segment")) as later:
        overlay.click(position={"x": 8, "y": 8}, modifiers=["Alt"])
    body = later.value.post_data_buffer or b""
    assert 0 < len(body) < 10_000, len(body)
    assert b"selection_id" in body and b"mask_input_b64" not in body
    assert later.value.response().json()["encoder_cached"] is True
    expect(page.get_by_test_id("search-object")).to_be_enabled()
    assert page.console_errors == []


def test_the_query_is_in_the_url(page: Any, stack: Any) -> None:
    search_by_upload(page, "green-tri")
    page.wait_for_url("**/?q=sha256:*")
    with page.expect_response(lambda r: r.url.endswith("/api/v1/search")) as again:
        page.reload()
    assert again.value.status == 200
    expect(page.get_by_test_id("query-image")).to_be_visible()
    assert sent_forms(page, "/api/v1/search")[-1]["file"]["file"] == "green-tri.png"

    chosen = page.get_by_test_id("result").nth(1)
    src = chosen.locator("img").get_attribute("src")
    image_id = src.split("/images/")[1].split("/")[0]
    with page.expect_response(lambda r: r.url.endswith("/api/v1/search")):
        chosen.get_by_test_id("more-like-this").click()
    page.wait_for_url(f"**/?q=id:{image_id}")
    # A shared link, opened elsewhere: the same query by catalog id.
    other = page.context.new_page()
    with other.expect_response(lambda r: r.url.endswith("/api/v1/search")) as shared:
        other.goto(f"/?q=id:{image_id}")
    assert shared.value.status == 200
    expect(other.get_by_test_id("result").first).to_be_visible()
    # The gallery is not empty: the page learns so from the configuration.
    with stack.client() as client:
        assert client.get("/api/v1/config").json()["gallery"]["indexed"] >= 4
