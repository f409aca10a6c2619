"""Login (JWT) and the caller's identity."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Request
from pydantic import BaseModel, Field

from gateway.deps import StateDep, User, client_key
from gateway.ratelimit import enforce
from gateway.routes._forms import InvalidRequest, json_fields, pick
from gateway.schemas import Identity, TokenOut
from gateway.security import Principal
from services.common.errors import DomainError, InvalidCredentials

router = APIRouter(tags=["auth"])


class Credentials(BaseModel):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


# The same fields as JSON or as a form; both required (the route reads whichever came, so
# the body is described here rather than by the parameters).
CREDENTIALS_SCHEMA = Credentials.model_json_schema()
LOGIN_BODY = {"x-request-body": {"required": True, "content": {
    "application/json": {"schema": CREDENTIALS_SCHEMA},
    "application/x-www-form-urlencoded": {"schema": CREDENTIALS_SCHEMA},
}}}


@router.post("/auth/login", response_model=TokenOut, openapi_extra=LOGIN_BODY)
async def login(
    request: Request,
    state: StateDep,
    username: str | None = Form(None, include_in_schema=False),
    password: str | None = Form(None, include_in_schema=False),
) -> TokenOut:
    """Exchange a username and password (JSON or form) for an access token."""
    await enforce(state.limiter, "login", client_key(request, None),
                  state.settings.login_rate_per_minute)
    body = await json_fields(request)
    name = pick("username", username, body, request)
    secret = password if password is not None else body.get("password")
    if not isinstance(name, str) or not isinstance(secret, str) or not name or not secret:
        raise InvalidRequest("username and password are required")
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


@router.get("/me", response_model=Identity)
async def me(principal: User) -> Identity:
    """The logged-in user."""
    return Identity(username=principal.username, role=principal.role)
