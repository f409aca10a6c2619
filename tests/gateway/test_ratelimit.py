"""Rate limits in memory and in Redis, and the search capacity gate."""

from __future__ import annotations

import asyncio

import pytest

from gateway.ratelimit import CapacityGate, MemoryLimiter, RateLimited, RedisLimiter, enforce
from services.common.errors import Overloaded


def test_memory_limit_then_retry_after() -> None:
    async def run() -> None:
        limiter = MemoryLimiter()
        for _ in range(3):
            await enforce(limiter, "login", "ip:1", 3)
        with pytest.raises(RateLimited) as err:
            await enforce(limiter, "login", "ip:1", 3)
        assert err.value.status == 429
        assert 1 <= int(err.value.headers["Retry-After"]) <= 60  # type: ignore[index]
        await enforce(limiter, "login", "ip:2", 3)  # another client is not limited

    asyncio.run(run())


@pytest.mark.integration
def test_redis_limit_shared(redis_url: str, redis_prefix: str) -> None:
    async def run() -> None:
        first, second = RedisLimiter(redis_url, redis_prefix), RedisLimiter(redis_url, redis_prefix)
        await enforce(first, "search", "user:a", 2)
        await enforce(second, "search", "user:a", 2)
        with pytest.raises(RateLimited):
            await enforce(first, "search", "user:a", 2)
        await first.close()
        await second.close()

    asyncio.run(run())


def test_capacity_gate_sheds_load() -> None:
    async def run() -> None:
        gate = CapacityGate(running=1, queued=1, retry_after_s=3)
        release = asyncio.Event()

        async def hold() -> None:
            async with gate.slot():
                await release.wait()

        tasks = [asyncio.create_task(hold()) for _ in range(2)]
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded) as err:
            async with gate.slot():
                pass
        assert err.value.headers == {"Retry-After": "3"}
        release.set()
        await asyncio.gather(*tasks)
        async with gate.slot():
            pass

        # A queued request waits at most max_wait_s, then is shed instead of hanging.
        patient = CapacityGate(running=1, queued=5, retry_after_s=1, max_wait_s=0.05)
        blocker = asyncio.Event()

        async def hold_patient() -> None:
            async with patient.slot():
                await blocker.wait()

        holder = asyncio.create_task(hold_patient())
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded):
            async with patient.slot():
                pass
        assert patient.inflight == 1
        blocker.set()
        await holder

    asyncio.run(run())
