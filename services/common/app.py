"""The skeleton every service app shares.

`create_service_app` gives a FastAPI app with: `/healthz` (process up), `/readyz` (the
service's own readiness check), `/metrics` (Prometheus text, a registry per app), the error
shape of `errors.py`, and a middleware that takes or assigns `X-Request-ID`, puts it on every
log line and echoes it. `internal_auth` is the dependency that guards internal routes.
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.errors import (
    ErrorBody,
    Unauthorized,
    error_response,
    install_error_handlers,
)
from services.common.logging import request_id_var

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
INTERNAL_TOKEN_HEADER = "X-Internal-Token"

ReadinessCheck = Callable[[], Awaitable[dict[str, Any]]]
# Called before /metrics answers; raises (401/403) to refuse the caller.
MetricsGuard = Callable[[Request], Awaitable[None]]
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


class RequestContextMiddleware:
    """Request id in (or new), request id out; request count and latency per route."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry, service: str) -> None:
        self.app = app
        self.requests = Counter(
            "http_requests_total", "HTTP requests", ["service", "method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds", "HTTP request latency", ["service", "method", "route"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming[:128] if incoming else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "-")
            self.requests.labels(self.service, method, path, str(status)).inc()
            self.latency.labels(self.service, method, path).observe(time.perf_counter() - start)
            request_id_var.reset(token)


def internal_auth(token: str) -> Callable[[Request], Awaitable[None]]:
    """A dependency refusing calls without the internal token (constant-time comparison)."""
    expected = token.encode()

    async def check(request: Request) -> None:
        given = request.headers.get(INTERNAL_TOKEN_HEADER, "").encode()
        if not given or not hmac.compare_digest(given, expected):
            raise Unauthorized("missing or invalid internal token", code="invalid_internal_token")

    return check


class Health(BaseModel):
    status: Literal["ok"]
    service: str


class Ready(BaseModel):
    status: Literal["ready"]
    service: str
    checks: dict[str, Any] = Field(description="each dependency's check")


async def _always_ready() -> dict[str, Any]:
    return {}


def create_service_app(
    *,
    name: str,
    lifespan: Lifespan | None = None,
    readiness: ReadinessCheck | None = None,
    description: str = "",
    version: str = "0.1.0",
    openapi_url: str = "/openapi.json",
    docs_url: str | None = "/docs",
    redoc_url: str | None = "/redoc",
) -> FastAPI:
    """A FastAPI app with health, readiness, metrics, request ids and the error shape.
    The OpenAPI document and its pages are served where the URLs say, and nowhere else."""
    registry = CollectorRegistry()
    app = FastAPI(title=f"imgsearch {name}", description=description, version=version,
                  lifespan=lifespan, openapi_url=openapi_url, docs_url=docs_url,
                  redoc_url=redoc_url,
                  swagger_ui_oauth2_redirect_url=f"{docs_url}/oauth2-redirect" if docs_url
                  else None)
    app.state.metrics_registry = registry
    app.state.readiness = readiness or _always_ready
    app.state.metrics_guard = None
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, registry=registry, service=name)

    @app.get("/healthz", tags=["ops"], response_model=Health)
    async def healthz() -> Health:
        """The process is up."""
        return Health(status="ok", service=name)

    @app.get("/readyz", tags=["ops"], response_model=Ready, responses={
        503: {"model": ErrorBody, "description": "not ready: `detail` holds the checks"}})
    async def readyz() -> JSONResponse | dict[str, Any]:
        """Dependencies reachable and model loaded."""
        try:
            checks = await app.state.readiness()
        except Exception as exc:  # a failing check is an answer, not a crash
            logger.warning("readiness check failed: %s", exc)
            return error_response(503, "not_ready", str(exc) or type(exc).__name__)
        failed = {k: v for k, v in checks.items() if v is False or isinstance(v, str)}
        if failed:
            return error_response(503, "not_ready", "dependencies not ready", checks)
        return {"status": "ready", "service": name, "checks": checks}

    @app.get("/metrics", tags=["ops"], response_class=Response, responses={
        200: {"description": "Prometheus text exposition",
              "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}},
        401: {"model": ErrorBody, "description": "a token is needed"},
        403: {"model": ErrorBody, "description": "the token may not read metrics"}})
    async def metrics(request: Request) -> Response:
        """Prometheus metrics."""
        guard: MetricsGuard | None = app.state.metrics_guard
        if guard is not None:
            await guard(request)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app

