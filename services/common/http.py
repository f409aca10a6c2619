"""Calling another service: internal token and request id on every call, retries on
transient failures (connection refused, timeouts, 502/503/504), errors mapped to
`UpstreamError` or passed through with the callee's own code.

A service may run as several replicas behind one name (`docker compose up --scale
embedding=N`: Docker's DNS answers the name with N addresses). A client that connects to the
name uses whichever address the resolver lists first, that is one replica. `Endpoints`
resolves every address of the name, sends each request to the address with the fewest
requests in flight (round robin among equals), resolves the name again every `refresh_s`,
and rests an address that failed to answer for `cooldown_s` (the retry goes to another).
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from services.common.app import INTERNAL_TOKEN_HEADER, REQUEST_ID_HEADER
from services.common.errors import DomainError, UpstreamError
from services.common.logging import request_id_var

logger = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({502, 503, 504})


class TransientUpstream(UpstreamError):
    """Worth retrying: the callee is down, slow or shedding load."""


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientUpstream)


def _raise_for(response: httpx.Response, service: str) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()["error"]
        code, message, detail = body["code"], body["message"], body.get("detail")
    except (ValueError, KeyError, TypeError):
        code, message, detail = "upstream_error", response.text[:500], None
    if response.status_code in TRANSIENT_STATUS:
        raise TransientUpstream(f"{service}: {message}", detail={"code": code,
                                                                "status": response.status_code})
    # The callee's own 4xx keeps its code and status: it is the caller's input that was wrong.
    status = response.status_code if response.status_code < 500 else 502
    raise DomainError(message, code=code, status=status, detail=detail)


# host name, port -> its addresses (raises OSError when the name does not resolve)
Resolver = Callable[[str, int], list[str]]


def resolve_all(host: str, port: int) -> list[str]:
    """Every address of `host`, IPv4 first when it has any, in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    v4 = [str(info[4][0]) for info in infos if info[0] == socket.AF_INET]
    v6 = [str(info[4][0]) for info in infos if info[0] == socket.AF_INET6]
    return list(dict.fromkeys(v4 or v6))


@dataclass
class Endpoint:
    """One address of a service: its base URL and the requests it has in flight."""

    address: str
    url: str
    in_flight: int = 0
    resting_until: float = 0.0
    requests: int = 0


class Endpoints:
    """The addresses behind one base URL and which one takes the next request (thread-safe).

    A URL whose host is an IP address, or an https URL (its certificate names the host),
    has one endpoint: the URL itself.
    """

    def __init__(self, base_url: str, *, refresh_s: float = 10.0, cooldown_s: float = 5.0,
                 resolver: Resolver | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.base_url = base_url.rstrip("/")
        url = httpx.URL(self.base_url)
        self._url = url
        self.host = url.host
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.refresh_s = refresh_s
        self.cooldown_s = cooldown_s
        self._resolver = resolver or resolve_all
        self._clock = clock
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._resolved_at: float | None = None
        self.spread = url.scheme == "http" and not _is_ip(self.host)
        self._endpoints: dict[str, Endpoint] = {}
        if not self.spread:
            self._endpoints[self.host] = Endpoint(self.host, self.base_url)
            self._resolved_at = float("inf")

    @property
    def host_header(self) -> str:
        """What the Host header says when a request goes to an address, not the name."""
        default = 443 if self._url.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"

    def needs_refresh(self) -> bool:
        return self._resolved_at is None or self._clock() - self._resolved_at >= self.refresh_s

    def refresh(self) -> None:
        """Resolve the name again; keep the known addresses when the resolver fails."""
        try:
            addresses = self._resolver(self.host, self.port)
        except OSError as exc:
            logger.warning("cannot resolve %s: %s", self.host, exc)
            addresses = []
        with self._lock:
            self._resolved_at = self._clock()
            if not addresses:
                if not self._endpoints:
                    # Nothing known yet: let the HTTP client resolve the name (and fail clearly).
                    self._endpoints[self.host] = Endpoint(self.host, self.base_url)
                return
            old = self._endpoints
            self._endpoints = {
                address: old.get(address) or Endpoint(address, self._url_for(address))
                for address in addresses}
            if set(old) != set(self._endpoints):
                logger.info("%s resolves to %s", self.host, ", ".join(addresses))

    def _url_for(self, address: str) -> str:
        return str(self._url.copy_with(host=address)).rstrip("/")

    def snapshot(self) -> list[Endpoint]:
        with self._lock:
            return list(self._endpoints.values())

    def _choose(self) -> Endpoint:
        with self._lock:
            endpoints = list(self._endpoints.values())
            now = self._clock()
            awake = [e for e in endpoints if e.resting_until <= now] or endpoints
            start = next(self._turn) % len(awake)
            ordered = awake[start:] + awake[:start]
            chosen = min(ordered, key=lambda e: e.in_flight)
            chosen.in_flight += 1
            chosen.requests += 1
            return chosen

    def _release(self, endpoint: Endpoint, failed: bool) -> None:
        with self._lock:
            endpoint.in_flight -= 1
            if failed:
                endpoint.resting_until = self._clock() + self.cooldown_s

    @contextmanager
    def pick(self) -> Iterator[Endpoint]:
        """The endpoint for one request; it rests if the block raises a transport error."""
        if self.needs_refresh():
            self.refresh()
        endpoint = self._choose()
        failed = False
        try:
            yield endpoint
        except (httpx.TransportError, httpx.TimeoutException):
            failed = True
            raise
        finally:
            self._release(endpoint, failed)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class ServiceClient:
    """A synchronous and asynchronous client of one internal service (every replica of it)."""

    def __init__(
        self,
        name: str,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        attempts: int = 4,
        backoff_max: float = 4.0,
        refresh_s: float = 10.0,
        cooldown_s: float = 5.0,
        resolver: Resolver | None = None,
        transport: httpx.MockTransport | None = None,
    ) -> None:
        """`transport`: an in-process stand-in of the service, for tests."""
        self.name = name
        self._transport = transport
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.attempts = attempts
        self.backoff_max = backoff_max
        self.endpoints = Endpoints(self.base_url, refresh_s=refresh_s, cooldown_s=cooldown_s,
                                   resolver=resolver)
        self._sync: httpx.Client | None = None
        self._async: httpx.AsyncClient | None = None
        self._lock = threading.Lock()

    def _headers(self, extra: dict[str, str] | None, endpoint: Endpoint) -> dict[str, str]:
        headers = {INTERNAL_TOKEN_HEADER: self._token, REQUEST_ID_HEADER: request_id_var.get()}
        if endpoint.address != self.endpoints.host:
            headers["Host"] = self.endpoints.host_header
        if extra:
            headers.update(extra)
        return headers

    def _retry_kwargs(self) -> dict[str, Any]:
        return {
            "retry": retry_if_exception(_is_transient),
            "stop": stop_after_attempt(self.attempts),
            "wait": wait_exponential(multiplier=0.2, max=self.backoff_max),
            "reraise": True,
        }

    def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                **kwargs: Any) -> httpx.Response:
        """Blocking call with retries; returns the response of a 2xx/3xx answer."""
        with self._lock:  # called from several threads (the gateway's thread pool)
            if self._sync is None:
                self._sync = httpx.Client(timeout=self.timeout, transport=self._transport)
            client = self._sync
        for attempt in Retrying(**self._retry_kwargs()):
            with attempt:
                try:
                    with self.endpoints.pick() as endpoint:
                        response = client.request(method, endpoint.url + path,
                                                  headers=self._headers(headers, endpoint),
                                                  **kwargs)
                except (httpx.TransportError, httpx.TimeoutException) as exc:
                    raise TransientUpstream(f"{self.name} unreachable: {exc}") from exc
                _raise_for(response, self.name)
        return response

    async def arequest(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                       **kwargs: Any) -> httpx.Response:
        """The same call from async code."""
        if self._async is None:
            self._async = httpx.AsyncClient(timeout=self.timeout, transport=self._transport)
        client = self._async
        async for attempt in AsyncRetrying(**self._retry_kwargs()):
            with attempt:
                if self.endpoints.needs_refresh():
                    # getaddrinfo blocks: never on the event loop
                    await asyncio.to_thread(self.endpoints.refresh)
                try:
                    with self.endpoints.pick() as endpoint:
                        response = await client.request(
                            method, endpoint.url + path,
                            headers=self._headers(headers, endpoint), **kwargs)
                except (httpx.TransportError, httpx.TimeoutException) as exc:
                    raise TransientUpstream(f"{self.name} unreachable: {exc}") from exc
                _raise_for(response, self.name)
        return response

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()
            self._async = None
        self.close()
