"""Revocable sessions: a token is honoured only while its user exists with the token version
it was issued with. The catalog bumps a user's version on a password or role change and
drops the row on delete; this module asks it, remembering each answer `ttl_s` seconds so a
burst of requests costs one catalog call. Changes made through this gateway are forgotten
at once; changes from elsewhere (the CLI, another gateway) take effect within `ttl_s`.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from gateway.security import Principal, TokenRevoked
from services.common.errors import DomainError
from services.common.http import ServiceClient

# Entries kept at most; past it the oldest half is dropped (the cache only saves calls).
MAX_ENTRIES = 10_000


class SessionChecker:
    def __init__(self, catalog: ServiceClient, ttl_s: float) -> None:
        self._catalog = catalog
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}

    async def _user(self, username: str) -> dict[str, Any] | None:
        now = time.monotonic()
        cached = self._cache.get(username)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            user: dict[str, Any] | None = (await self._catalog.arequest(
                "GET", f"/v1/users/{quote(username, safe='')}")).json()
        except DomainError as exc:
            if exc.status != 404:
                raise
            user = None
        if len(self._cache) >= MAX_ENTRIES:
            for key in list(self._cache)[:MAX_ENTRIES // 2]:
                del self._cache[key]
        if self.ttl_s > 0:
            self._cache[username] = (now + self.ttl_s, user)
        return user

    async def check(self, principal: Principal) -> Principal:
        """The principal with the user's current role; `TokenRevoked` (401) when the user
        is gone or the token predates a password or role change."""
        user = await self._user(principal.username)
        if user is None or int(user.get("token_version", 0)) != principal.token_version:
            raise TokenRevoked("this session was revoked (the user was deleted or changed "
                               "password or role); log in again")
        return Principal(username=principal.username, role=str(user["role"]),
                         token_version=principal.token_version)

    def forget(self, username: str) -> None:
        self._cache.pop(username, None)
