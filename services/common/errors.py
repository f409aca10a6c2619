"""One error shape for every service: {"error": {"code", "message", "detail"}}.

Domain code raises `DomainError` subclasses (a stable `code`, a default HTTP `status`); the
handlers installed by `install_error_handlers` turn them, FastAPI's validation errors and
anything unexpected into that JSON shape with the right status.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)


class DomainError(Exception):
    """An error with a stable machine-readable code; subclasses fix `code` and `status`."""

    code: str = "error"
    status: int = 400

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.detail = detail
        self.headers = headers


class NotFound(DomainError):
    code = "not_found"
    status = 404


class Conflict(DomainError):
    code = "conflict"
    status = 409


class Unauthorized(DomainError):
    code = "unauthorized"
    status = 401


class Forbidden(DomainError):
    code = "forbidden"
    status = 403


class Overloaded(DomainError):
    code = "overloaded"
    status = 503


class InvalidRequest(DomainError):
    """The request is well formed HTTP but its fields do not make sense together (422, as
    FastAPI's own validation errors)."""

    code = "invalid_request"
    status = 422


class InvalidCredentials(Unauthorized):
    """Unknown user or wrong password: one error for both, so neither can be probed."""

    code = "invalid_credentials"


class StatusConflict(Conflict):
    """A compare-and-set lost: the row was not in the status the caller expected.

    Raised by the catalog and rebuilt from its answer by the workers' client: the detail is
    `{"id", "current", "expected"}`, `current` also kept as an attribute.
    """

    code = "status_conflict"

    def __init__(self, message: str, *, image_id: int | None, current: str | None,
                 expected: str | list[str] | None) -> None:
        super().__init__(message, detail={"id": image_id, "current": current,
                                          "expected": expected})
        self.current = current

    @classmethod
    def from_error(cls, exc: DomainError) -> StatusConflict:
        """The conflict a peer answered with (its 409 body, as `ServiceClient` raised it)."""
        detail = exc.detail if isinstance(exc.detail, dict) else {}
        return cls(exc.message, image_id=detail.get("id"), current=detail.get("current"),
                   expected=detail.get("expected"))


class UpstreamError(DomainError):
    """A service this one depends on failed or is unreachable."""

    code = "upstream_unavailable"
    status = 503


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: InvalidRequest.code,
    429: "rate_limited",
    503: "unavailable",
}


class ErrorInfo(BaseModel):
    code: str
    message: str
    detail: Any = None


class ErrorBody(BaseModel):
    """The one error shape of every service, as `error_body` writes it."""

    error: ErrorInfo


def error_body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "detail": detail}}


def error_response(
    status: int, code: str, message: str, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message, detail), status_code=status, headers=headers)


def _jsonable_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        out.append(
            {
                "loc": [str(part) for part in err.get("loc", ())],
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
        )
    return out


async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Starlette's own errors (404 of no route, 405) in the one shape."""
    code = _STATUS_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(exc.status_code, code, message, None, getattr(exc, "headers", None))


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through the one JSON shape."""

    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(InvalidRequest.status, InvalidRequest.code,
                              "request validation failed", _jsonable_errors(exc))

    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error")
