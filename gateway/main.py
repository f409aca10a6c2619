"""The gateway app: `create_app()` builds it; the lifespan connects the internal services,
the rate limiter and the task producer, and creates the first admin when asked to."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware

from gateway import static
from gateway.apidoc import install_openapi, method_not_allowed
from gateway.bootstrap import ensure_first_admin
from gateway.clients import Upstreams
from gateway.config import GatewaySettings, SakuraSettings
from gateway.deps import GatewayState, authenticate, bearer_token
from gateway.headers import SecurityHeadersMiddleware
from gateway.ratelimit import CapacityGate, make_limiter
from gateway.routes import admin, auth, config, images, jobs, region, search
from gateway.schemas import ERROR_RESPONSES
from gateway.security import TokenIssuer, require_admin
from gateway.sessions import SessionChecker
from gateway.signing import UrlSigner
from gateway.tickets import TicketIssuer
from gateway.uploads import BodyLimitMiddleware
from services.common.app import create_service_app
from services.common.errors import UpstreamError, error_response, http_error
from services.common.queue import make_producer
from services.common.settings import common_settings

logger = logging.getLogger(__name__)

API = "/api/v1"
# Routes whose bodies may be large (many images); every other body gets the search limit.
UPLOAD_PATHS = (f"{API}/admin/images",)


def _limit_for(settings: GatewaySettings) -> Any:
    def limit_for(path: str, method: str) -> int | None:
        if method in ("GET", "HEAD", "OPTIONS"):
            return None
        if path in UPLOAD_PATHS:
            return settings.request_limit
        return settings.search_body_limit

    return limit_for


def _metrics_guard(settings: GatewaySettings) -> Any:
    """Who may read /metrics: the metrics token (Bearer) when one is set, or an admin; anyone
    when neither a metrics token is set nor search needs a login."""
    expected = settings.metrics_token.get_secret_value().encode()

    async def guard(request: Request) -> None:
        token = bearer_token(request)
        if expected and token and hmac.compare_digest(token.encode(), expected):
            return
        if not expected and settings.public_search:
            return
        state = request.app.state.gateway
        require_admin(await authenticate(state, token) if token else None)

    return guard


def create_app(settings: GatewaySettings | None = None, *, upstreams: Upstreams | None = None,
               producer: Any = None) -> FastAPI:
    """The gateway; refuses to build without a JWT secret and an internal token.
    `upstreams` and `producer` replace the internal services and the task queue (tests run
    the gateway against in-process stand-ins of them)."""
    settings = settings or GatewaySettings()
    jwt_secret = settings.require_jwt_secret()
    common = common_settings()
    internal_token = common.require_internal_token()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = upstreams or Upstreams.create(settings.urls(), internal_token,
                                                 timeout=settings.upstream_timeout_s,
                                                 attempts=settings.upstream_attempts)
        limiter = make_limiter(settings.redis_url, settings.redis_prefix)
        state = GatewayState(
            settings=settings,
            sakura=SakuraSettings(),
            upstreams=services,
            tokens=TokenIssuer(jwt_secret, issuer=settings.jwt_issuer,
                               audience=settings.jwt_audience, expiry_s=settings.jwt_expiry_s),
            signer=UrlSigner(jwt_secret, ttl_s=settings.signed_url_ttl_s, prefix=API),
            tickets=TicketIssuer(jwt_secret, ttl_s=settings.stream_ticket_ttl_s),
            limiter=limiter,
            search_gate=CapacityGate(settings.max_concurrent_searches, settings.search_queue,
                                     settings.retry_after_s, settings.search_queue_timeout_s),
            segment_gate=CapacityGate(settings.max_concurrent_segmentations,
                                      settings.segmentation_queue, settings.retry_after_s,
                                      settings.segmentation_queue_timeout_s),
            images_dir=common.images_dir,
            thumbs_dir=common.thumbs_dir,
            producer=producer if producer is not None else make_producer(),
            random_weights=common.random_weights,
            sessions=SessionChecker(services.catalog, settings.session_check_ttl_s),
        )
        app.state.gateway = state
        bootstrap = asyncio.create_task(ensure_first_admin(settings, services.catalog))
        app.state.admin_bootstrap = bootstrap
        logger.info("gateway ready", extra={"services": settings.urls(),
                                            "public_search": settings.public_search})
        try:
            yield
        finally:
            bootstrap.cancel()
            await services.aclose()
            await limiter.close()
            state.producer.close()

    async def readiness() -> dict[str, Any]:
        # Not ready while the first admin is being created: a client that logs in as soon as
        # the gateway is ready (`imgsearch up`, a deployment script) must find it.
        bootstrap: asyncio.Task[bool] | None = getattr(app.state, "admin_bootstrap", None)
        checks: dict[str, Any] = {"first_admin": bootstrap is not None and bootstrap.done()}
        optional: dict[str, str] = {}
        async with httpx.AsyncClient(timeout=3) as client:
            for name, url in settings.urls().items():
                try:
                    ok = (await client.get(url + "/readyz")).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if name == "segmentation":
                    optional[name] = "ready" if ok else "unavailable"
                else:
                    checks[name] = ok
        checks["optional"] = optional
        return checks

    # The public API documents itself under /api only (the web app owns every other path).
    app = create_service_app(name="gateway", lifespan=lifespan, readiness=readiness,
                             description="Public API of imgsearch.",
                             openapi_url=f"{API}/openapi.json", docs_url="/api/docs",
                             redoc_url=None)
    # Innermost, so the 413 it answers still carries the request id.
    app.user_middleware.append(Middleware(BodyLimitMiddleware, limit_for=_limit_for(settings)))
    app.user_middleware.insert(0, Middleware(SecurityHeadersMiddleware))
    app.state.metrics_guard = _metrics_guard(settings)

    @app.exception_handler(UpstreamError)
    async def _upstream(_: Request, exc: UpstreamError) -> JSONResponse:
        # A dependency down or shedding load: tell the client when to come back.
        headers = dict(exc.headers or {})
        headers.setdefault("Retry-After", str(settings.retry_after_s))
        return error_response(exc.status, exc.code, exc.message, exc.detail, headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette's 405 names the methods of the first route that matched the path only.
        wrong = method_not_allowed(app, request.url.path, request.method) \
            if exc.status_code == 405 else None
        if wrong is not None:
            return error_response(wrong.status, wrong.code, wrong.message, None, wrong.headers)
        return await http_error(request, exc)

    for module in (auth, search, region, images, admin, jobs, config):
        app.include_router(module.router, prefix=API, responses=ERROR_RESPONSES)
    static.mount(app, settings.web_dist_dir, api_prefix="/api")
    install_openapi(app, public_search=settings.public_search)
    return app
