"""Per-client rate limits (fixed one-minute windows) and the search concurrency gate.

With `gateway.redis_url` the counters live in Redis, shared by every gateway process;
without it they are in this process's memory. Past a limit: 429 `rate_limited` with
`Retry-After`. Past the search capacity (running + queued): 503 `overloaded` with
`Retry-After`, answered at once instead of letting requests time out.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from services.common.errors import DomainError, Overloaded

logger = logging.getLogger(__name__)

WINDOW_S = 60


class RateLimited(DomainError):
    code = "rate_limited"
    status = 429


class Limiter(Protocol):
    async def hit(self, key: str, limit: int) -> float | None:
        """Count one request of `key`; seconds to wait when over `limit`, else None."""
        ...

    async def peek(self, key: str, limit: int) -> float | None:
        """Like `hit` without counting: seconds to wait when `key` is at `limit` already."""
        ...

    async def close(self) -> None: ...


class MemoryLimiter:
    """Fixed windows in a dict; old windows are dropped as new ones start."""

    def __init__(self, window_s: int = WINDOW_S) -> None:
        self.window_s = window_s
        self._counts: dict[tuple[str, int], int] = {}
        self._window = -1

    async def hit(self, key: str, limit: int) -> float | None:
        now = time.time()
        window = int(now // self.window_s)
        if window != self._window:
            self._counts = {k: v for k, v in self._counts.items() if k[1] >= window}
            self._window = window
        count = self._counts.get((key, window), 0) + 1
        self._counts[(key, window)] = count
        if count > limit:
            return (window + 1) * self.window_s - now
        return None

    async def peek(self, key: str, limit: int) -> float | None:
        now = time.time()
        window = int(now // self.window_s)
        if self._counts.get((key, window), 0) >= limit:
            return (window + 1) * self.window_s - now
        return None

    async def close(self) -> None:
        self._counts.clear()


class RedisLimiter:
    """Fixed windows as Redis counters `<prefix>rl:<key>:<window>` expiring with the window."""

    def __init__(self, url: str, prefix: str, window_s: int = WINDOW_S) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.Redis.from_url(url)
        self.prefix = prefix
        self.window_s = window_s

    async def hit(self, key: str, limit: int) -> float | None:
        now = time.time()
        window = int(now // self.window_s)
        name = f"{self.prefix}rl:{key}:{window}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.expire(name, self.window_s + 1)
            count, _ = await pipe.execute()
        if int(count) > limit:
            return (window + 1) * self.window_s - now
        return None

    async def peek(self, key: str, limit: int) -> float | None:
        now = time.time()
        window = int(now // self.window_s)
        count = await self._redis.get(f"{self.prefix}rl:{key}:{window}")
        if int(count or 0) >= limit:
            return (window + 1) * self.window_s - now
        return None

    async def close(self) -> None:
        await self._redis.aclose()


def make_limiter(redis_url: str, prefix: str) -> Limiter:
    if redis_url:
        return RedisLimiter(redis_url, prefix)
    return MemoryLimiter()


async def enforce(limiter: Limiter, scope: str, client: str, limit: int, *,
                  count: bool = True) -> None:
    """Raise `RateLimited` (429, Retry-After) when `client` is over `limit` per minute.
    With `count=False` the request is only checked against the limit, not counted."""
    try:
        key = f"{scope}:{client}"
        wait = await (limiter.hit(key, limit) if count else limiter.peek(key, limit))
    except Exception as exc:  # a rate limiter down must not take search down with it
        logger.warning("rate limiter unavailable, request let through: %s", exc)
        return
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        raise RateLimited(
            f"too many {scope} requests; retry in {seconds} s",
            detail={"limit_per_minute": limit, "retry_after_s": seconds},
            headers={"Retry-After": str(seconds)},
        )


class CapacityGate:
    """At most `running` searches at once and `queued` waiting, each waiting at most
    `max_wait_s`; beyond that, 503 at once: a client gets an answer it can act on (retry
    later) instead of a timeout."""

    def __init__(self, running: int, queued: int, retry_after_s: int,
                 max_wait_s: float = 10.0) -> None:
        self._semaphore = asyncio.Semaphore(running)
        self.capacity = running + queued
        self.retry_after_s = retry_after_s
        self.max_wait_s = max_wait_s
        self.inflight = 0

    def _overloaded(self) -> Overloaded:
        return Overloaded("the search service is at capacity; retry shortly",
                          headers={"Retry-After": str(self.retry_after_s)})

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.inflight >= self.capacity:
            raise self._overloaded()
        self.inflight += 1
        try:
            try:
                await asyncio.wait_for(self._semaphore.acquire(), self.max_wait_s)
            except TimeoutError:
                raise self._overloaded() from None
            try:
                yield
            finally:
                self._semaphore.release()
        finally:
            self.inflight -= 1
