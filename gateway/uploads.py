"""Upload limits.

`BodyLimitMiddleware` refuses a request body past its limit while it streams in: at once
from `Content-Length`, else by counting the bytes received (chunked bodies), so an oversized
upload never gets buffered. `read_limited` reads one file up to its limit; the client's
filename is metadata only and never part of a path. Checking and storing a file is
`services.common.gallery`, shared with the workers' bulk ingest.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable

from fastapi import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.errors import error_body
from services.common.images import PayloadTooLarge

# path, method -> the byte limit of that request's body (None: no limit here)
LimitFor = Callable[[str, str], int | None]


class BodyLimitMiddleware:
    """413 `payload_too_large` as soon as a body is known to exceed its route's limit."""

    def __init__(self, app: ASGIApp, limit_for: LimitFor) -> None:
        self.app = app
        self.limit_for = limit_for

    async def _refuse(self, send: Send, limit: int) -> None:
        body = json.dumps(error_body(
            "payload_too_large", f"the request body exceeds {limit} bytes",
            {"max_bytes": limit})).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"], scope["method"])
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                too_big = False
            if too_big:
                await self._refuse(send, limit)
                return
        received = 0
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Answer now; the app sees a disconnected client and its answer is dropped.
                    refused = True
                    await self._refuse(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            # The app failing on the disconnect we fed it is expected once we refused.
            if not refused:
                raise


def clean_filename(name: str | None) -> str:
    """The client's filename as display metadata: base name only, no control characters."""
    raw = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in unicodedata.normalize("NFC", raw)
                      if unicodedata.category(ch)[0] != "C").strip()
    if cleaned in ("", ".", ".."):
        return "upload"
    return cleaned[:255]


async def read_limited(upload: UploadFile, max_bytes: int) -> bytes:
    """The file's bytes, refusing at `max_bytes + 1` without reading the rest."""
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"the file has more than {max_bytes} bytes",
            detail={"max_bytes": max_bytes},
        )
    return data
