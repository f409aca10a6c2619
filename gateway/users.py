"""Logins and user administration, passed through to the catalog (which checks and hashes
passwords and refuses to remove the last admin). A change here forgets the user's cached
session check at once, so their old tokens stop working with the next request
(`gateway/sessions.py`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from gateway.deps import GatewayState
from gateway.ratelimit import enforce
from gateway.schemas import Identity, TokenOut
from gateway.security import Principal
from services.catalog.schemas import UserList, UserOut
from services.common.errors import DomainError, InvalidCredentials


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


async def count_login_attempt(state: GatewayState, client: str) -> None:
    """Every login request counts against its client's rate, before its body is read."""
    await enforce(state.limiter, "login", client, state.settings.login_rate_per_minute)


async def login(state: GatewayState, name: str, secret: str) -> TokenOut:
    """An access token for a username and password (429 past the account's failures)."""
    if len(name) > 128 or len(secret) > 1024:
        raise InvalidCredentials("invalid username or password")
    # Per account, whatever address the attempts come from: failed logins are counted and,
    # past the limit, no password is checked for that account until the window ends.
    account, account_limit = f"user:{name}", state.settings.login_account_failures_per_minute
    await enforce(state.limiter, "login-failures", account, account_limit, count=False)
    try:
        response = await state.upstreams.catalog.arequest(
            "POST", "/v1/users/verify", json={"username": name, "password": secret})
    except DomainError as exc:
        if exc.status in (401, 404, 422):
            await enforce(state.limiter, "login-failures", account, account_limit)
            raise InvalidCredentials("invalid username or password") from exc
        raise
    user: dict[str, Any] = response.json()
    principal = Principal(username=user["username"], role=user["role"],
                          token_version=int(user["token_version"]))
    return TokenOut(access_token=state.tokens.issue(principal),
                    expires_in=state.tokens.expiry_s,
                    user=Identity(username=principal.username, role=principal.role))
