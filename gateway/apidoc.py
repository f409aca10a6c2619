"""The public API as it describes itself, kept true to what it does.

- Logins: the bearer scheme is declared on every route that reads a token; routes that also
  serve anonymous callers carry `openapi_extra={"x-login": ...}` ("optional": always, as the
  image files with their signed URLs; "search": when `gateway.public_search` is on), and
  the document says so with `security: [{}, ...]` (this scheme, or none).
- Bodies a route reads itself (JSON or form) are described by `x-request-body`.
- Methods: a 405's `Allow` lists every method the document gives the path (Starlette names
  those of the first matching route only), and a GET of an API path that takes only other
  methods is a 405, not the web app's 404.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from services.common.errors import DomainError

LOGIN_OPTIONAL = {"x-login": "optional"}
LOGIN_OPTIONAL_IF_PUBLIC = {"x-login": "search"}
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class MethodNotAllowed(DomainError):
    code = "method_not_allowed"
    status = 405


def _path_pattern(template: str, operations: dict[str, Any]) -> re.Pattern[str]:
    types = {p["name"]: (p.get("schema") or {}).get("type")
             for op in operations.values() if isinstance(op, dict)
             for p in op.get("parameters", []) if p.get("in") == "path"}

    def part(match: re.Match[str]) -> str:
        return "-?[0-9]+" if types.get(match.group(1)) == "integer" else "[^/]+"

    pieces = re.split(r"(\{[^}]+\})", template)
    regex = "".join(re.sub(r"\{([^}:]+)[^}]*\}", part, p) if p.startswith("{") else re.escape(p)
                    for p in pieces)
    return re.compile(f"^{regex}$")


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method the OpenAPI document gives `path` (empty: no such path)."""
    methods: set[str] = set()
    for template, operations in app.openapi()["paths"].items():
        if _path_pattern(template, operations).match(path):
            methods |= {m.upper() for m in operations if m in METHODS}
    return sorted(methods)


def method_not_allowed(app: FastAPI, path: str, method: str) -> MethodNotAllowed | None:
    """The 405 for `method` at `path` when other methods are answered there, else None."""
    methods = allowed_methods(app, path)
    if not methods or method in methods:
        return None
    return MethodNotAllowed(f"{method} is not allowed here; allowed: {', '.join(methods)}",
                            headers={"Allow": ", ".join(methods)})


def install_openapi(app: FastAPI, *, public_search: bool) -> None:
    """Build the OpenAPI document once, with the markers above applied."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version,
                             description=app.description, routes=app.routes)
        for operations in schema["paths"].values():
            for operation in operations.values():
                login = operation.pop("x-login", None)
                optional = login == "optional" or (login == "search" and public_search)
                if optional and operation.get("security"):
                    operation["security"] = [{}, *operation["security"]]
                body = operation.pop("x-request-body", None)
                if body is not None:
                    operation["requestBody"] = body
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
