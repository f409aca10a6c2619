"""The shared service skeleton: health, readiness, metrics, request ids, errors, token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient

from services.common.app import create_service_app, internal_auth
from services.common.errors import NotFound

TOKEN = "t" * 32


def _app(ready: bool = True) -> TestClient:
    async def readiness() -> dict[str, Any]:
        return {"model": True if ready else "not loaded"}

    app = create_service_app(name="demo", readiness=readiness)
    router = APIRouter(prefix="/v1", dependencies=[Depends(internal_auth(TOKEN))])

    @router.get("/thing/{thing_id}")
    async def thing(thing_id: int) -> dict[str, int]:
        if thing_id == 0:
            raise NotFound("no thing 0", code="thing_not_found")
        if thing_id == 13:
            raise RuntimeError("boom")
        return {"id": thing_id}

    app.include_router(router)
    return TestClient(app, raise_server_exceptions=False)


def test_health_ready_metrics() -> None:
    client = _app()
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/readyz").status_code == 200
    client.get("/v1/thing/1", headers={"X-Internal-Token": TOKEN})
    assert 'route="/v1/thing/{thing_id}"' in client.get("/metrics").text


def test_not_ready_is_503() -> None:
    response = _app(ready=False).get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_ready"


def test_request_id_is_kept_or_assigned() -> None:
    client = _app()
    assert client.get("/healthz", headers={"X-Request-ID": "abc"}).headers["x-request-id"] == "abc"
    assert len(client.get("/healthz").headers["x-request-id"]) == 32


def test_internal_token_required() -> None:
    client = _app()
    for headers in ({}, {"X-Internal-Token": "forged"}):
        response = client.get("/v1/thing/1", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_internal_token"
    assert client.get("/v1/thing/1", headers={"X-Internal-Token": TOKEN}).json() == {"id": 1}


def test_error_shape() -> None:
    client = _app()
    headers = {"X-Internal-Token": TOKEN}
    missing = client.get("/v1/thing/0", headers=headers)
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "thing_not_found", "message": "no thing 0",
                                        "detail": None}}
    invalid = client.get("/v1/thing/abc", headers=headers)
    assert invalid.status_code == 422 and invalid.json()["error"]["code"] == "invalid_request"
    crash = client.get("/v1/thing/13", headers=headers)
    assert crash.status_code == 500 and crash.json()["error"]["code"] == "internal_error"
    assert client.get("/nope").json()["error"]["code"] == "not_found"
