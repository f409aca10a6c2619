"""How every service is served: uvicorn with connection limits and timeouts, and proxy
headers trusted only from configured proxies.

uvicorn by itself closes idle keep-alive connections (`timeout_keep_alive`) but waits forever
for the rest of a request's headers or for the next chunk of its body, so a client sending a
byte every few seconds (slowloris) holds a connection, and a file descriptor, for as long as
it likes. `timed_h11` adds two deadlines to uvicorn's h11 protocol:

- headers: from the first byte of a request (or the connection's start) to the end of its
  headers, at most `timeout_headers_s`;
- body: between two pieces of a request body, at most `timeout_body_s` (not counted while the
  app has paused reading: that wait is ours, not the client's).

Past either, the connection is closed; the app sees a disconnect.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class _TimedH11Protocol(H11Protocol):
    timeout_headers_s: float = 10.0
    timeout_body_s: float = 30.0

    _deadline: asyncio.TimerHandle | None = None
    _deadline_kind: str = ""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow_state()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Between requests uvicorn's keep-alive timer runs; ours starts with the next byte
        # (or now, for a pipelined request already under way).
        self._disarm()
        if self.conn.their_state is not h11.IDLE:
            self._follow_state()

    def _follow_state(self) -> None:
        if self.transport.is_closing():
            self._disarm()
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            if self._deadline_kind != "headers":
                self._arm("headers")
        elif state is h11.SEND_BODY:
            self._arm("body")  # every piece of body restarts the wait for the next
        else:
            self._disarm()

    def _arm(self, kind: str) -> None:
        self._disarm()
        delay = self.timeout_headers_s if kind == "headers" else self.timeout_body_s
        self._deadline_kind = kind
        self._deadline = self.loop.call_later(delay, self._expired, kind)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._deadline_kind = ""

    def _expired(self, kind: str) -> None:
        self._deadline = None
        self._deadline_kind = ""
        if self.transport.is_closing():
            return
        if kind == "body" and self.flow.read_paused:
            self._arm("body")  # the app is not reading: the client is not late
            return
        if kind == "headers" and self.conn.their_state is not h11.IDLE:
            return
        self.logger.info("closing a connection from %s: no complete %s within the timeout",
                         self.client, kind)
        self.transport.close()


def timed_h11(*, timeout_headers_s: float, timeout_body_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with header and body deadlines (see the module docstring)."""
    return type("TimedH11Protocol", (_TimedH11Protocol,),
                {"timeout_headers_s": timeout_headers_s, "timeout_body_s": timeout_body_s})


def uvicorn_options(settings: Any) -> dict[str, Any]:
    """uvicorn.run keyword arguments from a service's settings (a `SectionSettings`)."""
    trusted: list[str] = list(settings.trusted_proxies)
    return {
        "http": timed_h11(timeout_headers_s=settings.timeout_headers_s,
                          timeout_body_s=settings.timeout_body_s),
        "timeout_keep_alive": max(1, round(settings.timeout_keep_alive_s)),
        "limit_concurrency": settings.max_connections,
        # X-Forwarded-For / -Proto rewrite the client address only when the connection comes
        # from a trusted proxy; with none configured the headers are ignored entirely.
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or None,
    }
