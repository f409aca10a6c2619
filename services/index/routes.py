"""HTTP routes of the index service. CPU work runs in the thread pool, never on the loop."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from services.common.tags import tag_key
from services.common.vectors import InvalidVectors, parse_vectors
from services.index.config import IndexSettings
from services.index.schemas import (
    GetRequest,
    GetResponse,
    IdsResponse,
    RebuildRequest,
    RemoveRequest,
    RemoveResponse,
    SearchHit,
    SearchRequest,
    SearchResponse,
    SnapshotResponse,
    StagingRequest,
    StatsResponse,
    TagCounts,
    TagsOf,
    TagsOfRequest,
    TagsRequest,
    TagsSet,
    UpsertRequest,
    UpsertResponse,
)
from services.index.store.errors import InvalidIds
from services.index.store.manager import IndexManager
from services.index.store.protocol import Ids, Vectors

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _manager(request: Request) -> IndexManager:
    manager: IndexManager = request.app.state.manager
    return manager


def _settings(request: Request) -> IndexSettings:
    settings: IndexSettings = request.app.state.settings
    return settings


def _ids(values: list[int], settings: IndexSettings) -> Ids:
    if len(values) > settings.max_batch:
        raise InvalidIds(f"{len(values)} ids in one request; the limit is {settings.max_batch}")
    if any(v < 0 or v > INT64_MAX for v in values):
        raise InvalidIds("ids are non-negative int64 catalog ids")
    return np.asarray(values, dtype=np.int64)


def _vectors(body: Any, settings: IndexSettings) -> Vectors:
    vectors = parse_vectors(body.vectors, body.vectors_b64, body.dim)
    if len(vectors) > settings.max_batch:
        raise InvalidVectors(f"{len(vectors)} vectors in one request; the limit is "
                             f"{settings.max_batch}")
    if body.dim is not None and vectors.shape[1] != body.dim:
        raise InvalidVectors(f"dim is {body.dim} but the vectors have {vectors.shape[1]}")
    return vectors


def _upsert_arrays(body: UpsertRequest, settings: IndexSettings) -> tuple[Ids, Vectors]:
    ids, vectors = _ids(body.ids, settings), _vectors(body, settings)
    if len(ids) != len(vectors):
        raise InvalidVectors(f"{len(ids)} ids for {len(vectors)} vectors")
    return ids, vectors


def _tag_lists(ids: Ids, tags: list[list[str]]) -> list[list[str]]:
    if len(tags) != len(ids):
        raise InvalidIds(f"{len(ids)} ids for {len(tags)} tag lists")
    return [sorted({tag_key(t) for t in names if tag_key(t)}) for names in tags]


def build_router(token_check: Any) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(token_check)], tags=["index"])

    @router.put("/vectors", response_model=UpsertResponse)
    async def upsert(body: UpsertRequest, request: Request) -> UpsertResponse:
        """Insert or replace vectors; acknowledged once the write-ahead log is on disk."""
        ids, vectors = _upsert_arrays(body, _settings(request))
        tags = _tag_lists(ids, body.tags) if body.tags is not None else None
        manager = _manager(request)
        count = await run_in_threadpool(manager.upsert, ids, vectors, body.model)
        if tags is not None:
            await run_in_threadpool(manager.set_tags, ids, tags)
        return UpsertResponse(upserted=len(ids), count=count)

    @router.put("/tags", response_model=TagsSet)
    async def set_tags(body: TagsRequest, request: Request) -> TagsSet:
        """Replace the tags of ids; acknowledged once the write-ahead log is on disk."""
        ids = _ids(body.ids, _settings(request))
        tags = _tag_lists(ids, body.tags)
        await run_in_threadpool(_manager(request).set_tags, ids, tags)
        return TagsSet(updated=len(ids))

    @router.post("/tags/get", response_model=TagsOf)
    async def tags_of(body: TagsOfRequest, request: Request) -> TagsOf:
        """The tags held for each id (reconcile compares them with the catalog's)."""
        ids = _ids(body.ids, _settings(request))
        tags = await run_in_threadpool(_manager(request).tags_of, ids)
        return TagsOf(ids=ids.tolist(), tags=tags)

    @router.get("/tags", response_model=TagCounts)
    async def tag_counts(request: Request) -> TagCounts:
        """Ids per tag held by the index."""
        return TagCounts(tags=await run_in_threadpool(_manager(request).tag_counts))

    @router.delete("/vectors", response_model=RemoveResponse)
    async def remove(body: RemoveRequest, request: Request) -> RemoveResponse:
        """Remove vectors by id (absent ids are ignored)."""
        ids = _ids(body.ids, _settings(request))
        removed, count = await run_in_threadpool(_manager(request).remove, ids)
        return RemoveResponse(removed=removed, count=count)

    @router.post("/search", response_model=SearchResponse)
    async def search(body: SearchRequest, request: Request) -> SearchResponse:
        """Nearest neighbours by inner product, best first, optionally among allowed ids
        and/or the ids carrying every one of `tags`."""
        settings = _settings(request)
        if body.k > settings.max_k:
            raise InvalidVectors(f"k={body.k} is above the limit {settings.max_k}",
                                 code="invalid_k")
        queries = _vectors(body, settings)
        allowed = None
        if body.allowed_ids is not None:
            allowed = np.asarray([i for i in body.allowed_ids if 0 <= i <= INT64_MAX],
                                 dtype=np.int64)
        tags = sorted({tag_key(t) for t in body.tags}) if body.tags else None
        D, I = await run_in_threadpool(_manager(request).search, queries, body.k, allowed,
                                       body.model, tags)
        results = []
        for d, i in zip(D, I, strict=True):
            keep = i >= 0
            results.append(SearchHit(ids=i[keep].tolist(), scores=d[keep].tolist()))
        return SearchResponse(results=results)

    @router.post("/vectors/get", response_model=GetResponse)
    async def get(body: GetRequest, request: Request) -> GetResponse:
        """The stored vectors of the ids found, in the order given."""
        ids = _ids(body.ids, _settings(request))
        found, vectors = await run_in_threadpool(_manager(request).live.get, ids)
        return GetResponse(ids=found.tolist(), vectors=vectors.tolist())

    @router.get("/ids", response_model=IdsResponse)
    async def list_ids(request: Request, after: int = Query(-1, ge=-1),
                       limit: int = Query(1000, ge=1, le=100000)) -> IdsResponse:
        """Ids in ascending order after `after` (paging for reconcile)."""
        ids = await run_in_threadpool(_manager(request).live.ids, after, limit)
        return IdsResponse(ids=ids.tolist(), next=int(ids[-1]) if len(ids) == limit else None)

    @router.get("/stats", response_model=StatsResponse)
    async def stats(request: Request) -> dict[str, Any]:
        """Count, dimension, model, type, tombstones, memory, staging."""
        return await run_in_threadpool(_manager(request).stats)

    @router.post("/snapshot", response_model=SnapshotResponse)
    async def snapshot(request: Request) -> SnapshotResponse:
        """Write a snapshot now and truncate the log it covers."""
        out = await run_in_threadpool(_manager(request).snapshot)
        return SnapshotResponse(count=out["count"], path=out["path"])

    @router.post("/rebuild")
    async def rebuild(body: RebuildRequest, request: Request) -> dict[str, Any]:
        """Rebuild over the same vectors as another type or with new parameters."""
        manager = _manager(request)
        await run_in_threadpool(manager.rebuild, body.type, body.params())
        return await run_in_threadpool(manager.stats)

    @router.post("/staging", status_code=201)
    async def create_staging(body: StagingRequest, request: Request) -> dict[str, Any]:
        """A fresh index for a reindex (replaces an older staging index)."""
        return await run_in_threadpool(_manager(request).create_staging, body.model, body.dim,
                                       body.type)

    @router.put("/staging/vectors", response_model=UpsertResponse)
    async def upsert_staging(body: UpsertRequest, request: Request) -> UpsertResponse:
        """Fill the staging index (same body as PUT /v1/vectors)."""
        ids, vectors = _upsert_arrays(body, _settings(request))
        tags = _tag_lists(ids, body.tags) if body.tags is not None else None
        manager = _manager(request)
        count = await run_in_threadpool(manager.upsert_staging, ids, vectors, body.model)
        if tags is not None:
            await run_in_threadpool(manager.staging_or_raise().set_tags, ids, tags)
        return UpsertResponse(upserted=len(ids), count=count)

    @router.post("/staging/commit")
    async def commit_staging(request: Request) -> dict[str, Any]:
        """Swap the staging index in as the live one, atomically and durably."""
        return await run_in_threadpool(_manager(request).commit_staging)

    @router.delete("/staging")
    async def drop_staging(request: Request) -> dict[str, bool]:
        """Drop the staging index."""
        await run_in_threadpool(_manager(request).drop_staging)
        return {"dropped": True}

    return router
