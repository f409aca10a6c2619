"""The home page's falling blossoms: present, toggled and remembered, off for reduced motion."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def test_sakura_canvas_and_toggle(page: Any) -> None:
    page.goto("/")
    canvas = page.get_by_test_id("sakura-canvas")
    expect(canvas).to_have_count(1)
    # It animates: the pixels change between two frames.
    first = page.eval_on_selector("[data-testid=sakura-canvas]", "c => c.toDataURL()")
    page.wait_for_timeout(300)
    assert page.eval_on_selector("[data-testid=sakura-canvas]", "c => c.toDataURL()") != first
    # Decoration only: clicks go through it.
    assert page.eval_on_selector("[data-testid=sakura-canvas]",
                                 "c => getComputedStyle(c).pointerEvents") == "none"

    toggle = page.get_by_test_id("sakura-toggle")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    toggle.click()
    expect(canvas).to_have_count(0)
    expect(toggle).to_have_attribute("aria-pressed", "false")
    page.reload()
    expect(page.get_by_test_id("sakura-toggle")).to_have_attribute("aria-pressed", "false")
    expect(page.get_by_test_id("sakura-canvas")).to_have_count(0)
    page.get_by_test_id("sakura-toggle").click()
    expect(page.get_by_test_id("sakura-canvas")).to_have_count(1)

    page.goto("/sketch")
    expect(page.get_by_test_id("sakura-canvas")).to_have_count(0)


def test_no_sakura_for_reduced_motion(new_page: Any) -> None:
    page = new_page(reduced_motion="reduce")
    page.goto("/")
    expect(page.get_by_test_id("nav-search")).to_be_visible()
    page.wait_for_timeout(200)
    expect(page.get_by_test_id("sakura-canvas")).to_have_count(0)
