"""User administration, passed through to the catalog (which hashes passwords and refuses
to remove the last admin). A change here forgets the user's cached session check at once,
so their old tokens stop working with the next request (`gateway/sessions.py`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from gateway.deps import GatewayState
from services.catalog.schemas import UserList, UserOut


def _path(username: str) -> str:
    return f"/v1/users/{quote(username, safe='')}"


async def create_user(state: GatewayState, body: dict[str, Any]) -> UserOut:
    return UserOut(**(await state.upstreams.catalog.arequest(
        "POST", "/v1/users", json=body)).json())


async def list_users(state: GatewayState) -> UserList:
    return UserList(**(await state.upstreams.catalog.arequest("GET", "/v1/users")).json())


async def change_user(state: GatewayState, username: str, change: dict[str, Any]) -> UserOut:
    try:
        return UserOut(**(await state.upstreams.catalog.arequest(
            "PATCH", _path(username), json=change)).json())
    finally:
        state.sessions.forget(username)


async def delete_user(state: GatewayState, username: str) -> None:
    try:
        await state.upstreams.catalog.arequest("DELETE", _path(username))
    finally:
        state.sessions.forget(username)
