"""Short-lived one-purpose tickets, for the one route a browser opens without headers: a
job's event stream (EventSource cannot send `Authorization`). Login tokens never travel in
URLs; an admin asks for a ticket with their token (`POST /api/v1/jobs/{id}/events/ticket`)
and puts the ticket in the stream's URL instead.

A ticket is `<payload>.<sig>`: the payload (base64url JSON) names its purpose, the resource
it opens (one job), the user with their role and token version, and its expiry; the
signature is HMAC-SHA256 under a key derived from the JWT secret, a key of its own so a
ticket can never stand for a login token or a signed image URL (and neither for it). A
ticket opens only its own purpose and resource until it expires (`ttl_s`, 60 s by default),
and only while its user keeps that token version: revoking the user's tokens revokes it.
It stays valid for reconnects within its lifetime (EventSource reconnects by itself).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from gateway.security import ROLES, Principal
from services.common.errors import Unauthorized

JOB_EVENTS = "job-events"
PURPOSES = (JOB_EVENTS,)
# Tickets longer than this are not ours: refused before any decoding.
MAX_TICKET_CHARS = 1024


class InvalidTicket(Unauthorized):
    code = "invalid_ticket"


class TicketExpired(Unauthorized):
    code = "ticket_expired"


@dataclass(frozen=True)
class Ticket:
    value: str
    expires_in: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TicketIssuer:
    """Issues and checks tickets with one secret; `ttl_s` is every ticket's lifetime."""

    def __init__(self, jwt_secret: str, *, ttl_s: int = 60) -> None:
        self._key = hmac.new(jwt_secret.encode(), b"imgsearch ticket v1",
                             hashlib.sha256).digest()
        self.ttl_s = ttl_s

    def _sig(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()

    def issue(self, principal: Principal, purpose: str, resource: str, *,
              now: float | None = None) -> Ticket:
        if purpose not in PURPOSES:
            raise ValueError(f"unknown ticket purpose {purpose!r}; expected one of {PURPOSES}")
        now = time.time() if now is None else now
        claims = {"p": purpose, "r": resource, "sub": principal.username,
                  "role": principal.role, "ver": principal.token_version,
                  "exp": int(now) + self.ttl_s}
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return Ticket(value=f"{payload}.{self._sig(payload)}", expires_in=self.ttl_s)

    def verify(self, ticket: str, purpose: str, resource: str, *,
               now: float | None = None) -> Principal:
        """The user a ticket was issued to, as they were then (check the session next);
        raises `InvalidTicket` (forged, or for another purpose or resource) or
        `TicketExpired`."""
        invalid = InvalidTicket("the ticket is not valid for this stream; ask for a new one")
        if len(ticket) > MAX_TICKET_CHARS:
            raise invalid
        payload, _, sig = ticket.partition(".")
        expected = self._sig(payload).encode()
        # Bytes, not str: compare_digest refuses non-ASCII strings, and `sig` is the client's.
        if not payload or not hmac.compare_digest(expected, sig.encode("utf-8", "replace")):
            raise invalid
        try:
            claims = json.loads(_unb64(payload))
        except (ValueError, binascii.Error) as exc:
            raise invalid from exc
        if not isinstance(claims, dict) or claims.get("p") != purpose or \
                claims.get("r") != resource:
            raise invalid
        username, role = claims.get("sub"), claims.get("role")
        version, exp = claims.get("ver"), claims.get("exp")
        if (not isinstance(username, str) or role not in ROLES
                or not isinstance(version, int) or not isinstance(exp, int)):
            raise invalid
        now = time.time() if now is None else now
        if exp < now:
            raise TicketExpired("the ticket has expired; ask for a new one")
        if exp > now + self.ttl_s + 1:
            # Issued with a longer lifetime than this server gives: not one of ours now.
            raise invalid
        return Principal(username=username, role=str(role), token_version=version)
