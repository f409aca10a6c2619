"""Routes that take form fields also accept the same fields as JSON (and query parameters),
as docs/api.md promises; FastAPI documents the form, this reads whichever came."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from services.common.errors import InvalidRequest


async def json_fields(request: Request) -> dict[str, Any]:
    """The JSON object body of a request sent as application/json, else {}."""
    content_type = request.headers.get("content-type", "")
    if not content_type.split(";")[0].strip().lower().endswith("json"):
        return {}
    try:
        body = await request.json()
    except RecursionError as exc:
        # json.loads recurses once per nesting level: thousands of '[' exhaust the stack.
        raise InvalidRequest("the JSON body is nested too deeply") from exc
    except ValueError as exc:
        raise InvalidRequest("the body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("the JSON body must be an object")
    return body


def pick(name: str, form_value: Any, body: dict[str, Any], request: Request) -> Any:
    """A field from the form, else the JSON body, else the query string."""
    if form_value is not None:
        return form_value
    if name in body:
        return body[name]
    return request.query_params.get(name)


def as_int(name: str, value: Any, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"{name} must be an integer", detail={"field": name}) from exc
    if isinstance(value, bool) or not low <= number <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}",
                             detail={"field": name, "min": low, "max": high})
    return number


def as_float(name: str, value: Any, default: float, low: float, high: float) -> float:
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"{name} must be a number", detail={"field": name}) from exc
    if isinstance(value, bool) or not low <= number <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}",
                             detail={"field": name, "min": low, "max": high})
    return number


def as_tags(value: Any) -> list[str]:
    """`a,b` or ["a", "b"] -> cleaned, de-duplicated tag names."""
    if value is None or value == "":
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    tags: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidRequest("tags must be strings")
        tag = item.strip()
        if len(tag) > 64:
            raise InvalidRequest("a tag has at most 64 characters", detail={"tag": tag[:64]})
        if tag and tag not in tags:
            tags.append(tag)
    return tags

