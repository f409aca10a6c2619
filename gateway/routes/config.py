"""What the web app needs to know about this server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from fastapi import APIRouter

from gateway.deps import StateDep
from services.common.errors import DomainError
from services.common.vocabulary import LISTED

router = APIRouter(tags=["config"])


# Every page load asks for /config: the services' info is kept this long.
INFO_TTL_S = 10.0
_cache: dict[str, tuple[float, dict[str, Any] | None]] = {}


async def _info(name: str, client: Any) -> dict[str, Any] | None:
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


async def _indexed(client: Any) -> int | None:
    """How many images search can find (the catalog's `indexed` count), kept as the info."""
    now = time.monotonic()
    cached = _cache.get("gallery")
    if cached is not None and now - cached[0] < INFO_TTL_S:
        return (cached[1] or {}).get("indexed")
    try:
        counts = (await client.arequest("GET", "/v1/stats")).json().get("images") or {}
        body: dict[str, Any] | None = {"indexed": int(counts.get("indexed", 0))}
    except (DomainError, httpx.HTTPError, ValueError, AttributeError):
        body = None
    _cache["gallery"] = (now, body)
    return (body or {}).get("indexed")


@router.get("/config")
async def get_config(state: StateDep) -> dict[str, Any]:
    """Public settings, the model in use, whether object search is available."""
    up = state.upstreams
    model, seg, indexed = await asyncio.gather(
        _info(up.embedding.base_url, up.embedding),
        _info(up.segmentation.base_url, up.segmentation), _indexed(up.catalog))
    return {
        "public_search": state.settings.public_search,
        "model": {
            "id": model.get("model") if model else None,
            "dim": model.get("dim") if model else None,
            "random_weights": bool(model.get("random_weights")) if model
            else state.random_weights,
        },
        "segmentation": {
            "available": seg is not None,
            "random_weights": bool(seg.get("random_weights")) if seg else False,
        },
        # The web app tells an empty gallery from a search without matches (null: unknown).
        "gallery": {"indexed": indexed},
        "sakura": {"enabled": state.sakura.enabled, "count": state.sakura.count,
                   "fall_speed": state.sakura.fall_speed},
        "limits": {"max_upload_bytes": state.settings.max_upload_bytes,
                   "max_files_per_request": state.settings.max_files_per_request},
        # The admin's status filter offers these (services/common/vocabulary.py defines them).
        "image_statuses": [s.value for s in LISTED],
    }
