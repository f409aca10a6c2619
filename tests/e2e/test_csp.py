"""The web app under its Content-Security-Policy: search, the results' thumbnails and the
lightbox's original (served inline, nosniff) work, and the browser reports no violation."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import picture

pytestmark = pytest.mark.e2e

RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));
"""


def test_the_app_runs_under_its_csp(page: Any) -> None:
    page.context.add_init_script(RECORD_VIOLATIONS)
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text) if msg.type == "error" else None)
    response = page.goto("/")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    with page.expect_response(lambda r: r.url.endswith("/api/v1/search")):
        page.get_by_test_id("file-input").set_input_files(
            files=[{"name": "q.png", "mimeType": "image/png", "buffer": picture("red-disc")}])
    expect(page.get_by_test_id("query-image")).to_be_visible()  # a blob: URL
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=result] img')]"
        ".every(img => img.complete && img.naturalWidth > 0)")
    with page.expect_response(lambda r: "/file" in r.url) as original:
        page.get_by_test_id("result").first.locator("button.thumb").click()
    assert original.value.headers["content-disposition"].startswith("inline;")
    expect(page.get_by_test_id("lightbox")).to_be_visible()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=lightbox-image]').naturalWidth > 0")
    assert page.evaluate("window.__cspViolations") == []
    assert not [line for line in console if "Content Security Policy" in line], console
    assert page.console_errors == []
