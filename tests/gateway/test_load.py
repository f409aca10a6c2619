"""A bounded load test on loopback: concurrent image searches and id searches for about a
minute, past the gateway's capacity. Every answer is a 200, or a 429/503 carrying
Retry-After; no other 5xx and no request left to time out."""

from __future__ import annotations

import asyncio
import collections
import random
import time

import httpx
import pytest

from tests.gateway.conftest import files_of, png_bytes
from tests.helpers.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DURATION_S = 60
CLIENTS = 48  # the stack admits 4 running + 16 queued searches
TIMEOUT_S = 30


async def hammer(stack: Stack, ids: list[int], blobs: list[bytes]) -> collections.Counter[str]:
    outcomes: collections.Counter[str] = collections.Counter()
    stop_at = time.monotonic() + DURATION_S
    limits = httpx.Limits(max_connections=CLIENTS + 4)

    async def client_loop(client: httpx.AsyncClient, seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < stop_at:
            try:
                if rng.random() < 0.5:
                    response = await client.post("/api/v1/search", data={
                        "image_id": str(rng.choice(ids)), "k": "10"})
                else:
                    response = await client.post("/api/v1/search", data={"k": "10"},
                                                 files={"file": ("q.png", rng.choice(blobs))})
            except httpx.TimeoutException:
                outcomes["timeout"] += 1
                continue
            status = response.status_code
            if status in (429, 503):
                outcomes[f"{status}+retry-after" if response.headers.get("Retry-After")
                         else f"{status}-no-retry-after"] += 1
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")) / 4)
            else:
                outcomes[str(status)] += 1

    async with httpx.AsyncClient(base_url=stack.url, timeout=TIMEOUT_S, limits=limits) as client:
        await asyncio.gather(*(client_loop(client, i) for i in range(CLIENTS)))
    return outcomes


def test_search_under_load(stack: Stack) -> None:
    blobs = [png_bytes(555_000 + i) for i in range(12)]
    with stack.admin_client() as admin:
        body = admin.post("/api/v1/admin/images", files=files_of(blobs, "load")).json()
        assert stack.wait_job(admin, body["job_id"])["status"] == "succeeded"
    ids = [img["id"] for img in body["images"]]
    outcomes = asyncio.run(hammer(stack, ids, blobs))
    assert outcomes["200"] > 0, outcomes
    shed = outcomes["503+retry-after"] + outcomes["429+retry-after"]
    assert shed > 0, f"the load never exceeded capacity: {outcomes}"
    unexpected = {k: v for k, v in outcomes.items()
                  if k not in ("200", "503+retry-after", "429+retry-after")}
    assert not unexpected, outcomes
    # And the gateway still serves normally afterwards.
    with stack.client() as client:
        response = client.post("/api/v1/search", data={"image_id": str(ids[0]), "k": "3"})
        assert response.status_code == 200 and response.json()["results"][0]["id"] == ids[0]
