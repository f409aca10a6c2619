"""The gateway app in process, with no internal service behind it: what it answers alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.main import create_app


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> TestClient:
    monkeypatch.setenv("IMGSEARCH_INTERNAL_TOKEN", "t" * 24)
    monkeypatch.setenv("IMGSEARCH_GATEWAY_JWT_SECRET", "s" * 40)
    monkeypatch.setenv("IMGSEARCH_GATEWAY_LOGIN_RATE_PER_MINUTE", "3")
    monkeypatch.setenv("IMGSEARCH_GATEWAY_UPSTREAM_ATTEMPTS", "1")
    # Nothing listens on port 9: the catalog is "down".
    monkeypatch.setenv("IMGSEARCH_GATEWAY_CATALOG_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("IMGSEARCH_GATEWAY_WEB_DIST", str(tmp_path / "dist"))
    return TestClient(create_app())


def test_login_is_rate_limited(client: TestClient) -> None:
    with client:
        for _ in range(3):
            response = client.post("/api/v1/auth/login", json={"username": "a", "password": "b"})
            assert response.status_code == 503  # the catalog is down
            assert response.headers["Retry-After"]
        limited = client.post("/api/v1/auth/login", json={"username": "a", "password": "b"})
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60


def test_web_app_and_spa_fallback(client: TestClient, tmp_path: Path) -> None:
    with client:
        page = client.get("/search/anything")
        assert page.status_code == 200 and "make web" in page.text
        dist = tmp_path / "dist"
        (dist / "assets").mkdir(parents=True)
        (dist / "index.html").write_text("<html>app</html>")
        (dist / "assets" / "app.js").write_text("console.log(1)")
        assert client.get("/").text == "<html>app</html>"
        assert client.get("/admin/images").text == "<html>app</html>"
        assert client.get("/assets/app.js").text == "console.log(1)"
        assert client.get("/assets/../../../etc/passwd").text == "<html>app</html>"
        api = client.get("/api/v1/no-such-route")
        assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"
        assert client.get("/api/v1/openapi.json").json()["info"]["title"] == "imgsearch gateway"
        assert "swagger" in client.get("/api/docs").text.lower()
        # The API documents itself under /api only: the root paths are not its pages.
        assert client.get("/openapi.json").status_code == 404
        assert client.get("/docs").status_code == 404
        assert "swagger" not in client.get("/redoc").text.lower()
        assert "redoc" not in client.get("/redoc").text.lower()


def test_search_reads_json_form_and_query(client: TestClient) -> None:
    with client:
        empty = client.post("/api/v1/search", json={"k": 5})
        assert empty.status_code == 422
        assert empty.json()["error"]["message"] == "give an image file or an image_id"
        bad_k = client.post("/api/v1/search", json={"image_id": 3, "k": 500})
        assert bad_k.status_code == 422 and bad_k.json()["error"]["detail"]["field"] == "k"
        # image_id from JSON, form or query reaches the catalog (down here: 503, Retry-After).
        for kwargs in ({"json": {"image_id": 3}}, {"data": {"image_id": "3"}},
                       {"params": {"image_id": "3"}}):
            response = client.post("/api/v1/search", **kwargs)
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"]
        not_json = client.post("/api/v1/search", content=b"{",
                               headers={"content-type": "application/json"})
        assert not_json.status_code == 422


def test_the_page_size_limit_is_max_k_for_forms_too(monkeypatch: pytest.MonkeyPatch,
                                                    request: pytest.FixtureRequest) -> None:
    monkeypatch.setenv("IMGSEARCH_GATEWAY_MAX_K", "300")
    client: TestClient = request.getfixturevalue("client")
    with client:
        # Above the default 200, within max_k: the form passes and reaches the catalog (down).
        form = client.post("/api/v1/search", data={"image_id": "3", "k": "250"})
        assert form.status_code == 503, form.text
        for route, fields in (("/api/v1/search", {"image_id": "3"}),
                              ("/api/v1/search/region", {"image_id": "3", "prompts": "[]"})):
            over = client.post(route, data={**fields, "k": "301"})
            assert over.status_code == 422, over.text
            assert over.json()["error"]["code"] == "invalid_request"
            assert over.json()["error"]["detail"] == {"field": "k", "min": 1, "max": 300}


def test_config_names_the_statuses_an_admin_filters_by(client: TestClient) -> None:
    with client:
        config = client.get("/api/v1/config").json()
        assert config["image_statuses"] == ["pending", "indexed", "failed", "deleting"]


def test_not_ready_while_the_first_admin_is_being_created(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    # The catalog is unreachable: the bootstrap keeps retrying, and a client that logs in as
    # soon as the gateway is ready would not find the admin yet, so the gateway is not ready.
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("IMGSEARCH_INTERNAL_TOKEN", "t" * 24)
    monkeypatch.setenv("IMGSEARCH_GATEWAY_JWT_SECRET", "s" * 40)
    monkeypatch.setenv("IMGSEARCH_GATEWAY_CATALOG_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("IMGSEARCH_GATEWAY_ADMIN_USERNAME", "root")
    monkeypatch.setenv("IMGSEARCH_GATEWAY_ADMIN_PASSWORD", "a long first password")
    with TestClient(create_app()) as client:
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["error"]["detail"]["first_admin"] is False
