"""Browser tests: headless Chromium (Debian's, through Python Playwright) driving the built
web app as served by the real gateway, with every service and a worker behind it
(tests.helpers.stack, random weights). One stack and one browser for the whole module set;
each test gets a fresh browser context and leaves a screenshot in test-artifacts/e2e/."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw

from tests.helpers.requirements import missing
from tests.helpers.stack import running_stack

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web"
ARTIFACTS = REPO / "test-artifacts" / "e2e"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

# Records every FormData body given to fetch() or XMLHttpRequest: text fields as strings,
# files as {"file": name, "size", "type"}.
RECORD_FORMS = """
(() => {
  window.__sentForms = []
  const describe = (form) => {
    const fields = {}
    for (const [key, value] of form.entries()) {
      const item = typeof value === 'string' ? value
        : { file: value.name, size: value.size, type: value.type }
      if (key in fields) fields[key] = [].concat(fields[key], [item])
      else fields[key] = item
    }
    return fields
  }
  const record = (url, body) => {
    if (body instanceof FormData) {
      window.__sentForms.push({ url: String(url).split('?')[0], fields: describe(body) })
    }
  }
  const fetch0 = window.fetch
  window.fetch = function (input, init) {
    record(typeof input === 'string' ? input : input.url, init && init.body)
    return fetch0.apply(this, arguments)
  }
  const open0 = XMLHttpRequest.prototype.open
  const send0 = XMLHttpRequest.prototype.send
  XMLHttpRequest.prototype.open = function (method, url) {
    this.__url = url
    return open0.apply(this, arguments)
  }
  XMLHttpRequest.prototype.send = function (body) {
    record(this.__url, body)
    return send0.apply(this, arguments)
  }
})()
"""


def chromium_path() -> str | None:
    explicit = os.environ.get("IMGSEARCH_TEST_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def ensure_web_build() -> Path:
    """web/dist from `make web`; built here when missing (npm must be installed)."""
    dist = WEB / "dist"
    if (dist / "index.html").is_file():
        return dist
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("web/dist is missing and npm is not installed: run `make web`")
    if not (WEB / "node_modules").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True)
    subprocess.run([npm, "run", "build"], cwd=WEB, check=True)
    return dist


def picture(kind: str, size: tuple[int, int] = (320, 240)) -> bytes:
    """A small synthetic photo: a coloured shape on a textured background, as PNG bytes."""
    palette = {
        "red-disc": ((230, 40, 40), "ellipse", (245, 240, 220)),
        "blue-box": ((40, 80, 220), "rectangle", (235, 245, 235)),
        "green-tri": ((40, 170, 60), "polygon", (240, 235, 245)),
        "orange-disc": ((250, 140, 20), "ellipse", (220, 230, 250)),
        "black-box": ((20, 20, 20), "rectangle", (250, 250, 250)),
    }
    color, shape, background = palette[kind]
    width, height = size
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    for x in range(0, width, 16):  # texture, so no two pictures are near-identical by accident
        draw.line([(x, 0), (x + 40, height)], fill=tuple(c - 25 for c in background), width=2)
    box = (width * 0.3, height * 0.25, width * 0.7, height * 0.75)
    if shape == "ellipse":
        draw.ellipse(box, fill=color)
    elif shape == "rectangle":
        draw.rectangle(box, fill=color)
    else:
        draw.polygon([(width * 0.5, height * 0.2), (width * 0.75, height * 0.8),
                      (width * 0.25, height * 0.8)], fill=color)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="session")
def web_dist() -> Path:
    return ensure_web_build()


class RunningStack:
    """A stack started elsewhere (IMGSEARCH_TEST_E2E_URL, IMGSEARCH_TEST_E2E_ADMIN=user:pass):
    the quick loop while working on the web app; the tests only use these members."""

    def __init__(self, url: str, admin: str) -> None:
        self.url = url.rstrip("/")
        self.admin_username, _, self.admin_password = admin.partition(":")

    def client(self, token: str | None = None, timeout: float = 120.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def admin_client(self) -> httpx.Client:
        with self.client() as client:
            answer = client.post("/api/v1/auth/login", json={
                "username": self.admin_username, "password": self.admin_password})
            answer.raise_for_status()
        return self.client(answer.json()["access_token"])

    def wait_job(self, client: httpx.Client, job_id: int, timeout: float = 300.0
                 ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}").json()
            if job.get("status") in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(0.3)
        raise TimeoutError(f"job {job_id} not finished after {timeout}s")


def seed_gallery(stack: Any) -> None:
    with stack.admin_client() as client:
        files = [("file", (f"{kind}.png", picture(kind), "image/png"))
                 for kind in ("red-disc", "blue-box", "green-tri", "orange-disc")]
        response = client.post("/api/v1/admin/images", files=files, data={"tags": "gallery"})
        assert response.status_code == 202, response.text
        job = stack.wait_job(client, response.json()["job_id"])
        assert job["status"] == "succeeded", job


# Package scope: the stack and the browser end with the browser tests. Playwright's sync API
# keeps an event loop running in the main thread while it is open, which would break every
# later test that calls asyncio.run().
@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory, web_dist: Path) -> Iterator[Any]:
    """Every service (segmentation included), a worker and the gateway serving web/dist,
    with four gallery images tagged "gallery"."""
    external = os.environ.get("IMGSEARCH_TEST_E2E_URL")
    if external:
        running = RunningStack(external, os.environ.get("IMGSEARCH_TEST_E2E_ADMIN", ""))
        seed_gallery(running)
        yield running
        return
    tmp = tmp_path_factory.mktemp("e2e-stack")
    with running_stack(tmp, segmentation=True,
                       gateway_env={"IMGSEARCH_GATEWAY_WEB_DIST": str(web_dist)}) as started:
        seed_gallery(started)
        yield started


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        missing("Chromium", "apt-get install chromium (or set IMGSEARCH_TEST_CHROMIUM)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def new_page(browser: Any, stack: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A factory of pages in fresh contexts (own storage); each page's console errors are
    collected and a screenshot of the last page is saved at teardown."""
    contexts: list[Any] = []
    pages: list[Any] = []

    def make(**options: Any) -> Any:
        options.setdefault("viewport", {"width": 1280, "height": 860})
        options.setdefault("locale", "en-US")
        context = browser.new_context(base_url=stack.url, **options)
        # Generous: model calls on a busy 2-core machine (the first MobileSAM image encoding
        # among them) can take tens of seconds; nothing here asserts speed.
        context.set_default_timeout(120_000)
        context.add_init_script(RECORD_FORMS)
        contexts.append(context)
        page = context.new_page()
        page.console_errors = []
        page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
        pages.append(page)
        return page

    yield make
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = request.node.name.replace("/", "_")
    for i, page in enumerate(pages):
        suffix = f"-{i}" if i else ""
        # A crashed page still lets the others be saved.
        with contextlib.suppress(Exception):
            page.screenshot(path=str(ARTIFACTS / f"{name}{suffix}.png"), full_page=True)
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page: Any) -> Any:
    return new_page()



def sent_forms(page: Any, path: str) -> list[dict[str, Any]]:
    """The multipart forms the page sent to `path` (see RECORD_FORMS), oldest first. Chromium
    does not hand request bodies holding files to the test, so the page records them."""
    forms: list[dict[str, Any]] = page.evaluate(
        "path => (window.__sentForms || []).filter(f => f.url.endsWith(path)).map(f => f.fields)",
        path)
    return forms
