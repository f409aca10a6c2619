"""Login (JWT) and the caller's identity."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from pydantic import BaseModel, Field

from gateway import users
from gateway.deps import StateDep, User, client_key
from gateway.routes._forms import InvalidRequest, json_fields, pick
from gateway.schemas import Identity, TokenOut

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
    await users.count_login_attempt(state, client_key(request, None))
    body = await json_fields(request)
    name = pick("username", username, body, request)
    secret = password if password is not None else body.get("password")
    if not isinstance(name, str) or not isinstance(secret, str) or not name or not secret:
        raise InvalidRequest("username and password are required")
    return await users.login(state, name, secret)


@router.get("/me", response_model=Identity)
async def me(principal: User) -> Identity:
    """The logged-in user."""
    return Identity(username=principal.username, role=principal.role)
