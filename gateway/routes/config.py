"""What the web app needs to know about this server (`gateway/server.py`)."""

from __future__ import annotations

from fastapi import APIRouter

from gateway import server
from gateway.deps import StateDep
from gateway.schemas import ServerConfig

router = APIRouter(tags=["config"])


@router.get("/config", response_model=ServerConfig)
async def get_config(state: StateDep) -> ServerConfig:
    """Public settings, the model in use, whether object search is available."""
    return await server.server_config(state)
