"""Upload limits: streamed body limit, per-file limit, filenames never paths."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.middleware import Middleware

from gateway.uploads import BodyLimitMiddleware, clean_filename


def app_with_limit(limit: int) -> FastAPI:
    app = FastAPI(middleware=[Middleware(BodyLimitMiddleware, limit_for=lambda p, m: limit)])

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    return app


async def chunks(n: int, size: int) -> AsyncIterator[bytes]:
    for _ in range(n):
        yield b"x" * size


@pytest.mark.parametrize("declared", [True, False])
def test_body_limit(declared: bool) -> None:
    import asyncio

    async def run() -> None:
        transport = httpx.ASGITransport(app=app_with_limit(1000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            ok = await client.post("/echo", content=b"x" * 1000)
            assert ok.json() == {"bytes": 1000}
            if declared:
                big = await client.post("/echo", content=b"x" * 5000)
            else:  # chunked: no Content-Length, counted while it streams
                big = await client.post("/echo", content=chunks(50, 100))
            assert big.status_code == 413
            assert big.json()["error"]["code"] == "payload_too_large"

    asyncio.run(run())


@pytest.mark.parametrize(("raw", "clean"), [
    ("../../etc/passwd", "passwd"),
    ("..\\..\\windows\\win.ini", "win.ini"),
    ("", "upload"),
    ("..", "upload"),
    ("a\x00b\nc.jpg", "abc.jpg"),
    ("猫.jpg", "猫.jpg"),
])
def test_clean_filename(raw: str, clean: str) -> None:
    assert clean_filename(raw) == clean
