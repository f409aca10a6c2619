"""The gateway in process with no service behind it: hostile requests that must end in a
clean 4xx, the security headers, the /metrics guard."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.main import create_app

DEEP = "[" * 2000 + "]" * 2000


def _client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> TestClient:
    monkeypatch.setenv("IMGSEARCH_INTERNAL_TOKEN", "t" * 24)
    monkeypatch.setenv("IMGSEARCH_GATEWAY_JWT_SECRET", "s" * 40)
    monkeypatch.setenv("IMGSEARCH_GATEWAY_UPSTREAM_ATTEMPTS", "1")
    monkeypatch.setenv("IMGSEARCH_GATEWAY_CATALOG_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("IMGSEARCH_GATEWAY_WEB_DIST", str(tmp_path / "dist"))
    for key, value in env.items():
        monkeypatch.setenv(f"IMGSEARCH_GATEWAY_{key}", value)
    return TestClient(create_app(), raise_server_exceptions=False)


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> TestClient:
    return _client(monkeypatch, tmp_path)


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/search"])
@pytest.mark.parametrize("body", [DEEP, '{"username": ' + DEEP + "}"])
def test_deeply_nested_json_is_a_4xx(client: TestClient, path: str, body: str) -> None:
    with client:
        response = client.post(path, content=body.encode(),
                               headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("path", ["/index.html%00.jpg", "/assets/%00", "/%00"])
def test_null_byte_paths_are_404(client: TestClient, tmp_path: Path, path: str) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<html>app</html>")
    with client:
        response = client.get(path)
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"


def test_security_headers(client: TestClient) -> None:
    with client:
        page = client.get("/")
        assert page.headers["x-content-type-options"] == "nosniff"
        csp = page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert page.headers["x-frame-options"] == "DENY"
        api = client.get("/api/v1/openapi.json")
        assert api.headers["x-content-type-options"] == "nosniff"
        assert api.headers["content-security-policy"] == "frame-ancestors 'none'"


def test_metrics_need_an_admin_when_search_is_private(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    with _client(monkeypatch, tmp_path, PUBLIC_SEARCH="false") as client:
        response = client.get("/metrics")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "not_authenticated"


def test_metrics_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with _client(monkeypatch, tmp_path, METRICS_TOKEN="m" * 32) as client:
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"Authorization": "Bearer " + "x" * 32})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_token"
        ok = client.get("/metrics", headers={"Authorization": "Bearer " + "m" * 32})
        assert ok.status_code == 200 and "http_requests_total" in ok.text


def test_metrics_public_with_public_search_and_no_token(client: TestClient) -> None:
    with client:
        assert client.get("/metrics").status_code == 200
