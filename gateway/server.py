"""What the gateway reports about the server: the public settings the web app reads on every
page load (`GET /config`, the services' info kept `INFO_TTL_S`), and the admin's stats
(catalog counts, index size and type, the model in use; a service that does not answer gets
an error in its place, not a failed page)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from pydantic import ValidationError

from gateway.deps import GatewayState
from gateway.schemas import (
    AdminStats,
    CatalogStats,
    EmbeddingInfo,
    ErrorInfo,
    GalleryConfig,
    IndexStats,
    LimitsConfig,
    ModelConfig,
    SakuraConfig,
    SegmentationConfig,
    ServerConfig,
    StatsUnavailable,
)
from services.common.errors import DomainError
from services.common.http import ServiceClient
from services.common.vocabulary import LISTED, ImageStatus

# Every page load asks for /config: the services' info is kept this long.
INFO_TTL_S = 10.0
_cache: dict[str, tuple[float, dict[str, Any] | None]] = {}


async def _info(name: str, client: ServiceClient) -> dict[str, Any] | None:
    now = time.monotonic()
    cached = _cache.get(name)
    if cached is not None and now - cached[0] < INFO_TTL_S:
        return cached[1]
    try:
        body: dict[str, Any] | None = (await client.arequest("GET", "/v1/info")).json()
    except (DomainError, httpx.HTTPError):
        body = None
    _cache[name] = (now, body)
    return body


async def _indexed(client: ServiceClient) -> int | None:
    """How many images search can find (the catalog's `indexed` count), kept as the info."""
    now = time.monotonic()
    cached = _cache.get("gallery")
    if cached is not None and now - cached[0] < INFO_TTL_S:
        return (cached[1] or {}).get("indexed")
    try:
        counts = (await client.arequest("GET", "/v1/stats")).json().get("images") or {}
        body: dict[str, Any] | None = {"indexed": int(counts.get(ImageStatus.indexed, 0))}
    except (DomainError, httpx.HTTPError, ValueError, AttributeError):
        body = None
    _cache["gallery"] = (now, body)
    return (body or {}).get("indexed")


async def server_config(state: GatewayState) -> ServerConfig:
    """Public settings, the model in use, whether object search is available."""
    up = state.upstreams
    model, seg, indexed = await asyncio.gather(
        _info(up.embedding.base_url, up.embedding),
        _info(up.segmentation.base_url, up.segmentation), _indexed(up.catalog))
    return ServerConfig(
        public_search=state.settings.public_search,
        model=ModelConfig(
            id=model.get("model") if model else None,
            dim=model.get("dim") if model else None,
            random_weights=bool(model.get("random_weights")) if model
            else state.random_weights),
        segmentation=SegmentationConfig(
            available=seg is not None,
            random_weights=bool(seg.get("random_weights")) if seg else False),
        # The web app tells an empty gallery from a search without matches (null: unknown).
        gallery=GalleryConfig(indexed=indexed),
        sakura=SakuraConfig(enabled=state.sakura.enabled, count=state.sakura.count,
                            fall_speed=state.sakura.fall_speed),
        limits=LimitsConfig(max_upload_bytes=state.settings.max_upload_bytes,
                            max_files_per_request=state.settings.max_files_per_request),
        image_statuses=list(LISTED),
    )


async def _part(client: ServiceClient, path: str, model: Any) -> Any:
    try:
        return model(**(await client.arequest("GET", path)).json())
    except DomainError as exc:
        return StatsUnavailable(error=ErrorInfo(code=exc.code, message=exc.message))
    except (ValidationError, ValueError, TypeError) as exc:
        return StatsUnavailable(error=ErrorInfo(
            code="invalid_response", message=f"{client.name} answered an unexpected body: "
                                             f"{str(exc)[:200]}"))


async def admin_stats(state: GatewayState) -> AdminStats:
    """Catalog counts per status, index size and type, the model in use."""
    up = state.upstreams
    catalog, index, model = await asyncio.gather(
        _part(up.catalog, "/v1/stats", CatalogStats),
        _part(up.index, "/v1/stats", IndexStats),
        _part(up.embedding, "/v1/info", EmbeddingInfo),
    )
    return AdminStats(catalog=catalog, index=index, model=model)
