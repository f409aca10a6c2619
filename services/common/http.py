"""Calling another service: internal token and request id on every call, retries on
transient failures (connection refused, timeouts, 502/503/504), errors mapped to
`UpstreamError` or passed through with the callee's own code.
"""

from __future__ import annotations

import logging
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


class ServiceClient:
    """A synchronous and asynchronous client of one internal service."""

    def __init__(
        self,
        name: str,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        attempts: int = 4,
        backoff_max: float = 4.0,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.attempts = attempts
        self.backoff_max = backoff_max
        self._sync: httpx.Client | None = None
        self._async: httpx.AsyncClient | None = None

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {INTERNAL_TOKEN_HEADER: self._token, REQUEST_ID_HEADER: request_id_var.get()}
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
        if self._sync is None:
            self._sync = httpx.Client(base_url=self.base_url, timeout=self.timeout)
        client = self._sync
        for attempt in Retrying(**self._retry_kwargs()):
            with attempt:
                try:
                    response = client.request(method, path, headers=self._headers(headers),
                                              **kwargs)
                except (httpx.TransportError, httpx.TimeoutException) as exc:
                    raise TransientUpstream(f"{self.name} unreachable: {exc}") from exc
                _raise_for(response, self.name)
        return response

    async def arequest(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                       **kwargs: Any) -> httpx.Response:
        """The same call from async code."""
        if self._async is None:
            self._async = httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout)
        client = self._async
        async for attempt in AsyncRetrying(**self._retry_kwargs()):
            with attempt:
                try:
                    response = await client.request(method, path,
                                                    headers=self._headers(headers), **kwargs)
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
