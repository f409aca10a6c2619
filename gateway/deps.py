"""Request dependencies: the gateway's state, the caller's identity and role, enqueueing."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Query, Request, Security
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from gateway.clients import Upstreams
from gateway.config import GatewaySettings, SakuraSettings
from gateway.ratelimit import CapacityGate, Limiter, enforce
from gateway.security import NotAuthenticated, Principal, TokenIssuer, parse_bearer, require_admin
from gateway.sessions import SessionChecker
from gateway.signing import UrlSigner
from gateway.tickets import JOB_EVENTS, MAX_TICKET_CHARS, TicketIssuer
from services.common.errors import UpstreamError
from services.common.queue import QueueUnavailable, send_task

logger = logging.getLogger(__name__)

# Declared for OpenAPI (the "Authorize" button and schemathesis); the header is parsed below
# so that a malformed one is `invalid_token`, not silently anonymous.
bearer_scheme = HTTPBearer(auto_error=False, description="JWT from POST /api/v1/auth/login")


@dataclass
class GatewayState:
    settings: GatewaySettings
    sakura: SakuraSettings
    upstreams: Upstreams
    tokens: TokenIssuer
    signer: UrlSigner
    tickets: TicketIssuer
    limiter: Limiter
    search_gate: CapacityGate
    segment_gate: CapacityGate
    images_dir: Path
    thumbs_dir: Path
    producer: Any
    random_weights: bool
    sessions: SessionChecker


def get_state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


StateDep = Annotated[GatewayState, Depends(get_state)]


def bearer_token(request: Request) -> str | None:
    """The token of the Authorization header, if any (tokens never come in URLs)."""
    header = request.headers.get("authorization")
    # Present but empty is a malformed header (`invalid_token`), not an anonymous caller.
    return parse_bearer(header) if header is not None else None


async def optional_principal(
    request: Request,
    state: StateDep,
    _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None,
) -> Principal | None:
    """The logged-in user, or None without a token; a bad or revoked token is always an
    error."""
    token = bearer_token(request)
    return await authenticate(state, token) if token else None


async def authenticate(state: GatewayState, token: str) -> Principal:
    """The token's user as the catalog knows them now (role, still existing, same version)."""
    return await state.sessions.check(state.tokens.verify(token))


OptionalUser = Annotated[Principal | None, Depends(optional_principal)]


async def user_principal(principal: OptionalUser) -> Principal:
    if principal is None:
        raise NotAuthenticated("log in to use this route")
    return principal


async def search_principal(principal: OptionalUser, state: StateDep) -> Principal | None:
    """Anyone when `gateway.public_search` is on, else any logged-in user."""
    if principal is None and not state.settings.public_search:
        raise NotAuthenticated("search needs a login on this server")
    return principal


async def admin_principal(principal: OptionalUser) -> Principal:
    return require_admin(principal)


async def stream_admin_principal(
    request: Request,
    state: StateDep,
    job_id: Annotated[int, PathParam(ge=1, le=2**63 - 1)],
    ticket: Annotated[str | None, Query(
        max_length=MAX_TICKET_CHARS,
        description="from POST /jobs/{job_id}/events/ticket (EventSource sends no token)")
    ] = None,
    _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None,
) -> Principal:
    """Admin check for a job's event stream: the Authorization header, or a ticket for this
    job's stream (`gateway/tickets.py`) checked against the user's current token version."""
    token = bearer_token(request)
    if token:
        return require_admin(await authenticate(state, token))
    if not ticket:
        raise NotAuthenticated("log in as an admin, or open the stream with a ticket")
    issued = state.tickets.verify(ticket, JOB_EVENTS, str(job_id))
    return require_admin(await state.sessions.check(issued))


User = Annotated[Principal, Depends(user_principal)]
SearchUser = Annotated[Principal | None, Depends(search_principal)]
AdminUser = Annotated[Principal, Depends(admin_principal)]
StreamAdmin = Annotated[Principal, Depends(stream_admin_principal)]


def client_key(request: Request, principal: Principal | None) -> str:
    if principal is not None:
        return f"user:{principal.username}"
    host = request.client.host if request.client else "unknown"
    return f"ip:{host}"


async def limit_search(request: Request, state: StateDep, principal: SearchUser) -> None:
    await enforce(state.limiter, "search", client_key(request, principal),
                  state.settings.search_rate_per_minute)


SearchLimited = Depends(limit_search)


async def enqueue(state: GatewayState, name: str, kwargs: dict[str, Any]) -> str:
    """Send task `name`; 503 `queue_unavailable` when the broker refuses."""
    try:
        return await run_in_threadpool(send_task, name, kwargs, producer=state.producer)
    except QueueUnavailable as exc:
        raise UpstreamError(str(exc), code="queue_unavailable",
                            headers={"Retry-After": str(state.settings.retry_after_s)}) from exc
