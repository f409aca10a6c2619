"""Search aggregation: a query vector -> index (over-fetched, filtered by the tags the index
holds) -> catalog rows that are `indexed` and whose file exists -> one page of results.

Invariant 1 of the design lives here: an id the index returns is shown only when the catalog
says `indexed` *now* (a row marked `deleting` vanishes at once) and its file is on disk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from starlette.concurrency import run_in_threadpool

from gateway.deps import GatewayState
from gateway.schemas import QueryInfo, SearchPage, SearchResult
from gateway.security import Principal
from gateway.signing import KINDS
from gateway.sketch import normalise_sketch
from services.common.errors import NotFound
from services.common.images import probe_image
from services.common.storage import InvalidStorageKey, resolve
from services.common.tags import tag_key
from services.common.vocabulary import SEARCHABLE, ImageStatus, Role

# Rounds of doubling the index fetch when filtered-out rows leave the page short.
MAX_ROUNDS = 4


@dataclass(frozen=True)
class SearchParams:
    k: int = 20
    offset: int = 0
    min_score: float = 0.0
    tags: tuple[str, ...] = ()


@dataclass
class QueryVector:
    vector: list[float]
    model: str | None
    kind: Literal["image", "id", "sketch", "region"]


def check_query_image(state: GatewayState, data: bytes, *, max_pixels: int | None = None
                      ) -> None:
    """Header checks (bytes, format, pixels) before the image travels anywhere."""
    probe_image(data, max_bytes=state.settings.max_upload_bytes,
                max_pixels=max_pixels or state.settings.max_image_pixels)


async def embed(state: GatewayState, data: bytes, filename: str = "query",
                *, patch_tokens: bool = False) -> dict[str, Any]:
    """The embedding service's answer for one image (vectors, model, patch tokens)."""
    params = {"tokens": "patch"} if patch_tokens else None
    response = await state.upstreams.embedding.arequest(
        "POST", "/v1/embed", params=params,
        files={"file": (filename, data, "application/octet-stream")})
    body: dict[str, Any] = response.json()
    return body


async def query_from_image(state: GatewayState, data: bytes) -> QueryVector:
    check_query_image(state, data)
    body = await embed(state, data)
    return QueryVector(vector=body["vectors"][0], model=body.get("model"), kind="image")


async def visible_image(state: GatewayState, image_id: int, *, admin: bool) -> dict[str, Any]:
    """The row of `image_id` if the caller may see it (viewers: `indexed` only), else 404."""
    image = await state.upstreams.get_image(image_id)
    if not admin and image.get("status") not in SEARCHABLE:
        raise NotFound(f"image {image_id} does not exist", code="image_not_found")
    return image


async def query_from_id(state: GatewayState, image_id: int, *, admin: bool) -> QueryVector:
    """'More like this': the stored vector of an indexed image."""
    image = await visible_image(state, image_id, admin=admin)
    response = await state.upstreams.index.arequest("POST", "/v1/vectors/get",
                                                    json={"ids": [image_id]})
    body = response.json()
    if not body.get("ids"):
        raise NotFound(f"image {image_id} has no vector yet (status {image.get('status')})",
                       code="image_not_indexed")
    return QueryVector(vector=body["vectors"][0], model=image.get("model_id"), kind="id")


def file_exists(state: GatewayState, image: dict[str, Any]) -> bool:
    try:
        return resolve(state.images_dir, image.get("storage_key") or "").is_file()
    except InvalidStorageKey:
        return False


def image_urls(state: GatewayState, image: dict[str, Any],
               principal: Principal | None) -> dict[str, str]:
    """`thumbnail_url` and `file_url` of an image for this caller. Plain when anyone may
    load them; signed for the caller's role (short-lived, no token in them) when search
    needs a login or the image is not indexed (an admin's view), since <img> tags cannot
    send the Authorization header."""
    image_id = int(image["id"])
    if state.settings.public_search and image.get("status", ImageStatus.indexed) in SEARCHABLE:
        return {kind + "_url": f"/api/v1/images/{image_id}/{kind}" for kind in KINDS}
    role = principal.role if principal is not None else Role.viewer
    return {kind + "_url": state.signer.url(image_id, kind, role) for kind in KINDS}


def result_of(image: dict[str, Any], score: float, urls: dict[str, str]) -> SearchResult:
    return SearchResult(
        id=image["id"],
        score=round(float(score), 6),
        thumbnail_url=urls["thumbnail_url"],
        file_url=urls["file_url"],
        original_filename=image.get("original_filename"),
        tags=image.get("tags", []),
        width=image.get("width"),
        height=image.get("height"),
        bytes=image.get("bytes"),
        created_at=image.get("created_at"),
    )


def carries(image: dict[str, Any], tags: set[str]) -> bool:
    """The catalog row has every one of `tags` (the index's tag sets are a copy kept in
    step and repaired by reconcile; the row decides)."""
    return tags <= set(image.get("tags") or ())


async def search_page(state: GatewayState, query: QueryVector, params: SearchParams,
                      *, principal: Principal | None = None,
                      started: float | None = None) -> SearchPage:
    """One page of results for `query` (the shape of docs/api.md's result page)."""
    started = started if started is not None else time.perf_counter()
    hits: list[tuple[dict[str, Any], float]] = []
    exhausted = True
    wanted = {tag_key(t) for t in params.tags}
    # The index answers at most `index.max_k` hits: the deepest page ends there.
    max_fetch = state.settings.index_max_k
    want = params.offset + params.k
    fetch = min(max_fetch, want + max(state.settings.search_overfetch, want // 2))
    for _ in range(MAX_ROUNDS):
        body: dict[str, Any] = {"vectors": [query.vector], "k": fetch}
        if params.tags:
            # The index holds each image's tags: the filter names them, no id list
            # travels (a 10% tag at 10M images would be a million ids per query).
            body["tags"] = list(params.tags)
        if query.model:
            body["model"] = query.model
        result = (await state.upstreams.index.arequest(
            "POST", "/v1/search", json=body)).json()["results"][0]
        pairs = [(int(i), float(s)) for i, s in zip(result["ids"], result["scores"],
                                                    strict=False) if int(i) >= 0]
        exhausted = len(result["ids"]) < fetch
        rows = await state.upstreams.lookup([i for i, _ in pairs], status=ImageStatus.indexed)
        by_id = {row["id"]: row for row in rows}
        hits = [(by_id[i], s) for i, s in pairs
                if i in by_id and s >= params.min_score and carries(by_id[i], wanted)
                and file_exists(state, by_id[i])]
        below = bool(pairs) and pairs[-1][1] < params.min_score
        if len(hits) >= want or exhausted or below or fetch >= max_fetch:
            exhausted = exhausted or below
            break
        fetch = min(max_fetch, fetch * 2)
    page = hits[params.offset:params.offset + params.k]
    return SearchPage(
        results=[result_of(image, score, image_urls(state, image, principal))
                 for image, score in page],
        k=params.k,
        offset=params.offset,
        total=len(hits),
        total_exact=exhausted,
        query=QueryInfo(kind=query.kind, model=query.model),
        took_ms=round((time.perf_counter() - started) * 1000, 1),
    )


async def search_image_or_id(state: GatewayState, params: SearchParams, *,
                             data: bytes | None, image_id: int | None,
                             principal: Principal | None, started: float) -> SearchPage:
    """`POST /search`: by the uploaded image's bytes, else by an image id's stored vector."""
    async with state.search_gate.slot():
        if data is not None:
            query = await query_from_image(state, data)
        elif image_id is not None:
            query = await query_from_id(state, image_id,
                                        admin=bool(principal and principal.is_admin))
        else:
            raise ValueError("a search needs the bytes of an image or an image id")
        return await search_page(state, query, params, principal=principal, started=started)


async def search_sketch(state: GatewayState, params: SearchParams, data: bytes, *,
                        principal: Principal | None, started: float) -> SearchPage:
    """`POST /search/sketch`: the drawing normalised (cropped to its strokes, squared,
    even line weight; `gateway/sketch.py`), embedded, searched."""
    check_query_image(state, data, max_pixels=state.settings.max_sketch_pixels)
    async with state.search_gate.slot():
        png = await run_in_threadpool(
            normalise_sketch, data, max_bytes=state.settings.max_upload_bytes,
            max_pixels=state.settings.max_sketch_pixels)
        answer = await embed(state, png, "sketch.png")
        query = QueryVector(vector=answer["vectors"][0], model=answer.get("model"),
                            kind="sketch")
        return await search_page(state, query, params, principal=principal, started=started)
