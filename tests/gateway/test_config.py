"""Gateway settings: no default secret, service URLs from the other sections."""

from __future__ import annotations

import pytest

from gateway.config import GatewaySettings
from gateway.main import create_app


def test_refuses_to_start_without_a_jwt_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSEARCH_INTERNAL_TOKEN", "t" * 24)
    with pytest.raises(ValueError, match="IMGSEARCH_GATEWAY_JWT_SECRET"):
        create_app()
    monkeypatch.setenv("IMGSEARCH_GATEWAY_JWT_SECRET", "short")
    with pytest.raises(ValueError, match=r"secrets\.token_urlsafe"):
        create_app()


def test_service_urls_follow_their_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSEARCH_EMBEDDING_PORT", "9101")
    monkeypatch.setenv("IMGSEARCH_GATEWAY_CATALOG_URL", "http://db-host:1234")
    urls = GatewaySettings().urls()
    assert urls["embedding"] == "http://127.0.0.1:9101"
    assert urls["catalog"] == "http://db-host:1234"
    assert urls["index"] == "http://127.0.0.1:8103"
