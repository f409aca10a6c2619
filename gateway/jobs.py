"""Jobs as the public API shows them: the catalog's row with its progress (0..1) and the
near duplicates an ingest found, the server-sent event stream that follows one job, and
starting the maintenance jobs (reindex, reconcile)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any, Literal

import numpy as np
from fastapi import Request

from gateway.deps import GatewayState, enqueue
from gateway.ingest import start_job
from gateway.schemas import JobAccepted, JobView, NearDuplicate
from gateway.security import Principal
from services.common.errors import DomainError, NotFound
from services.common.queue import RECONCILE, REINDEX
from services.common.vocabulary import JOB_FINISHED, JobKind


def public_job(job: dict[str, Any],
               near_duplicates: list[NearDuplicate] | None = None) -> JobView:
    """The catalog's job row as docs/api.md shows it (with `progress` in 0..1)."""
    total = int(job.get("total") or 0)
    settled = int(job.get("done") or 0) + int(job.get("failed") or 0) + int(
        job.get("skipped") or 0)
    progress = min(1.0, settled / total) if total else 0.0
    if job.get("status") in JOB_FINISHED:
        progress = 1.0
    return JobView(
        id=job["id"],
        kind=job["kind"],
        status=job["status"],
        total=total,
        done=int(job.get("done") or 0),
        failed=int(job.get("failed") or 0),
        skipped=int(job.get("skipped") or 0),
        progress=round(progress, 4),
        finished=job.get("status") in JOB_FINISHED,
        near_duplicates=near_duplicates or [],
        items_failed=job.get("items_failed") or [],
        items_skipped=job.get("items_skipped") or [],
        error=job.get("error"),
        created_at=job.get("created_at"),
        started_at=job.get("started_at"),
        finished_at=job.get("finished_at"),
    )


# How the workers word a skipped near duplicate (services/workers/tasks/ingest.py).
_NEAR = re.compile(r"near_duplicate_of=(\d+) score=(-?[0-9.]+)")
# Rows looked up per job answer: an ingest job is one upload request (files per request).
MAX_NEAR_LOOKUP = 1000


async def _cosines(state: GatewayState, pairs: list[tuple[int, int]]) -> dict[int, float]:
    """image id -> cosine with its near duplicate, for pairs whose two vectors are indexed
    (vectors are L2-normalised: the inner product is the cosine)."""
    ids = sorted({i for pair in pairs for i in pair})
    if not ids:
        return {}
    body = (await state.upstreams.index.arequest("POST", "/v1/vectors/get",
                                                 json={"ids": ids})).json()
    vectors = {int(i): np.asarray(v, dtype=np.float32)
               for i, v in zip(body.get("ids") or [], body.get("vectors") or [], strict=False)}
    return {image_id: round(float(vectors[image_id] @ vectors[other]), 4)
            for image_id, other in pairs if image_id in vectors and other in vectors}


async def near_duplicates(state: GatewayState, job: dict[str, Any]) -> list[NearDuplicate]:
    """Images of an ingest job the workers found to be near duplicates of existing ones:
    kept ones (indexed, scored from the two stored vectors) and skipped ones (scored from
    the worker's note on the job item)."""
    ids = (job.get("params") or {}).get("image_ids") or []
    if job.get("kind") != JobKind.ingest or not ids:
        return []
    noted: dict[int, float] = {}
    for item in job.get("items_skipped") or []:
        match = _NEAR.search(str(item.get("reason") or ""))
        if match:
            noted[int(item["image_id"])] = float(match.group(2))
    rows = await state.upstreams.lookup([int(i) for i in ids[:MAX_NEAR_LOOKUP]], status=None)
    pairs = [(int(row["id"]), int(row["near_duplicate_of"])) for row in rows
             if row.get("near_duplicate_of")]
    kept = [(image_id, other) for image_id, other in pairs if image_id not in noted]
    scores = {**await _cosines(state, kept), **noted}
    return [NearDuplicate(image_id=image_id, duplicate_of=other, score=scores.get(image_id),
                          skipped=image_id in noted)
            for image_id, other in pairs]


async def fetch_job(state: GatewayState, job_id: int) -> JobView:
    """The job as the public API shows it; 404 `job_not_found`."""
    try:
        response = await state.upstreams.catalog.arequest("GET", f"/v1/jobs/{job_id}")
    except DomainError as exc:
        if exc.status == 404:
            raise NotFound(f"job {job_id} does not exist", code="job_not_found") from exc
        raise
    job = response.json()
    return public_job(job, await near_duplicates(state, job))


def _event(name: str, job: JobView) -> bytes:
    return f"event: {name}\ndata: {job.model_dump_json()}\n\n".encode()


async def job_events(request: Request, state: GatewayState, job_id: int) -> AsyncIterator[bytes]:
    """`progress` (the job) on every change, `done` at the end, a comment line when quiet;
    ends when the client goes away. The first read happens now: an unknown job is a 404."""
    first = await fetch_job(state, job_id)

    async def stream() -> AsyncIterator[bytes]:
        job, last = first, None
        idle = 0.0
        while True:
            if job != last:
                yield _event("progress", job)
                last, idle = job, 0.0
            if job.status in JOB_FINISHED:
                yield _event("done", job)
                return
            await asyncio.sleep(state.settings.job_poll_s)
            idle += state.settings.job_poll_s
            if idle >= 15:
                # A comment line keeps proxies from closing a quiet stream.
                yield b": keep-alive\n\n"
                idle = 0.0
            if await request.is_disconnected():
                return
            job = await fetch_job(state, job_id)

    return stream()


async def start_maintenance(state: GatewayState, principal: Principal,
                            kind: Literal["reindex", "reconcile"]) -> JobAccepted:
    """A reindex or reconcile job, its one task queued (the worker reports progress)."""
    job = await start_job(state, kind, [], creator=principal.username)
    await enqueue(state, REINDEX if kind == "reindex" else RECONCILE, {"job_id": job["id"]})
    return JobAccepted(job_id=job["id"])
