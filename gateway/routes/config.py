"""What the web app needs to know about this server."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import APIRouter

from gateway.deps import StateDep
from services.common.errors import DomainError

router = APIRouter(tags=["config"])


async def _info(client: Any) -> dict[str, Any] | None:
    try:
        body: dict[str, Any] = (await client.arequest("GET", "/v1/info")).json()
        return body
    except (DomainError, httpx.HTTPError):
        return None


@router.get("/config")
async def get_config(state: StateDep) -> dict[str, Any]:
    """Public settings, the model in use, whether object search is available."""
    up = state.upstreams
    model, seg = await asyncio.gather(_info(up.embedding), _info(up.segmentation))
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
        "sakura": {"enabled": state.sakura.enabled, "count": state.sakura.count,
                   "fall_speed": state.sakura.fall_speed},
        "limits": {"max_upload_bytes": state.settings.max_upload_bytes,
                   "max_files_per_request": state.settings.max_files_per_request},
    }
