"""Admin: login, upload with progress and the job followed to the end, then delete with
confirmation."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import picture

pytestmark = pytest.mark.e2e


def login(page: Any, stack: Any, password: str | None = None) -> None:
    page.goto("/admin")
    form = page.get_by_test_id("login-form")
    form.get_by_label("Username").fill(stack.admin_username)
    form.get_by_label("Password").fill(password or stack.admin_password)
    form.get_by_role("button", name="Sign in").click()


def test_wrong_password_is_refused(page: Any, stack: Any) -> None:
    login(page, stack, password="not-the-password")
    expect(page.get_by_test_id("login-error")).to_have_text("Wrong user name or password.")
    expect(page.get_by_test_id("signed-in")).to_have_count(0)


def test_admin_login_upload_and_delete(page: Any, stack: Any) -> None:
    login(page, stack)
    expect(page.get_by_test_id("signed-in")).to_contain_text(stack.admin_username)
    expect(page.get_by_test_id("model-id")).to_contain_text("dinov2_vits14")
    expect(page.get_by_test_id("random-weights-banner")).to_be_visible()
    token = page.evaluate("sessionStorage.getItem('imgsearch.token')")
    assert token

    # Sizes of this run: exact duplicates of earlier uploads would not make new images.
    width = 240 + secrets.randbelow(200)
    files = [{"name": "upload-black.png", "mimeType": "image/png",
              "buffer": picture("black-box", (width, 200))},
             {"name": "upload-green.png", "mimeType": "image/png",
              "buffer": picture("green-tri", (width, width))},
             {"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image"}]
    page.get_by_test_id("admin-file-input").set_input_files(files=files)
    page.get_by_test_id("upload-tags").fill("e2e")
    with page.expect_response(lambda r: r.url.endswith("/api/v1/admin/images")) as answer:
        page.get_by_test_id("upload-start").click()
    assert answer.value.status == 202, answer.value.text()
    body = answer.value.json()
    assert len(body["images"]) == 2 and len(body["rejected"]) == 1

    items = page.get_by_test_id("upload-item")
    expect(items).to_have_count(3)
    expect(page.get_by_test_id("upload-overall")).to_have_attribute("value", "100")
    # A rejected file: its name stays readable, the reason is a sentence, not a raw code.
    assert body["rejected"][0]["code"] == "not_an_image"
    expect(items.nth(2)).to_contain_text("notes.png")
    expect(items.nth(2).get_by_test_id("upload-error")).to_have_text(
        "That file is not an image this server can read (JPEG, PNG, GIF, WebP, BMP or TIFF).")
    assert "not_an_image" not in items.nth(2).inner_text()
    name_box = items.nth(2).locator(".name").bounding_box()
    assert name_box["width"] > 60
    # The job is followed to its end (events stream or polling).
    job = page.get_by_test_id("job").first
    expect(job).to_have_attribute("data-status", "succeeded", timeout=120_000)
    expect(job).to_contain_text("2 of 2 done")
    # Statuses and job kinds in words, not the API's values.
    expect(job.get_by_test_id("job-status")).to_have_text("Done")
    expect(job).to_contain_text("Upload")

    ids = [image["id"] for image in body["images"]]
    rows = page.locator("[data-testid=image-row]")
    for image_id in ids:
        expect(rows.locator(f"xpath=self::*[@data-id='{image_id}']")).to_have_count(1)
    expect(page.locator(f"[data-testid=image-row][data-id='{ids[1]}'] .status")).to_have_text(
        "Searchable")
    target = page.locator(f"[data-testid=image-row][data-id='{ids[0]}']")
    target.get_by_role("checkbox").check()
    page.get_by_test_id("delete-selected").click()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("1 image will be removed")
    # The sticky header is under the backdrop, out of reach.
    nav = page.get_by_test_id("nav-sketch").bounding_box()
    at = page.evaluate(
        "([x, y]) => document.elementFromPoint(x, y)?.closest('[data-testid]')?.dataset.testid",
        [nav["x"] + nav["width"] / 2, nav["y"] + nav["height"] / 2])
    assert at != "nav-sketch"
    with page.expect_response(lambda r: r.url.endswith("/api/v1/admin/images/delete")) as gone:
        page.get_by_test_id("confirm-yes").click()
    assert gone.value.status == 202
    assert gone.value.json()["ids"] == [ids[0]]
    expect(page.get_by_test_id("job").first).to_have_attribute(
        "data-status", "succeeded", timeout=120_000)
    expect(target).to_have_count(0)
    with stack.client() as client:
        assert client.get(f"/api/v1/images/{ids[0]}").status_code == 404
        assert client.get(f"/api/v1/images/{ids[1]}").status_code == 200

    page.get_by_test_id("logout").click()
    expect(page.get_by_test_id("login-form")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('imgsearch.token')") is None


def test_reconcile_and_reindex_jobs_are_followed(page: Any, stack: Any) -> None:
    login(page, stack)
    jobs = page.get_by_test_id("job")
    with page.expect_response(lambda r: r.url.endswith("/api/v1/admin/reconcile")) as answer:
        page.get_by_test_id("reconcile").click()
    assert answer.value.status == 202
    expect(jobs.first).to_contain_text("Reconcile")
    expect(jobs.first).to_have_attribute("data-status", "succeeded", timeout=120_000)
    with page.expect_response(lambda r: r.url.endswith("/api/v1/admin/reindex")) as answer:
        page.get_by_test_id("reindex").click()
    assert answer.value.status == 202
    expect(jobs).to_have_count(2)
    expect(jobs.first).to_contain_text("Reindex")
    expect(jobs.first).to_have_attribute("data-status", "succeeded", timeout=300_000)
    # Search still answers from the rebuilt index.
    with stack.client() as client:
        files = {"file": ("q.png", picture("red-disc"), "image/png")}
        assert client.post("/api/v1/search", files=files).json()["total"] >= 4
