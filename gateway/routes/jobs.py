"""Job progress, as JSON and as a server-sent event stream."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from fastapi import APIRouter, Path, Request
from fastapi.responses import StreamingResponse

from gateway.deps import AdminUser, GatewayState, StateDep, StreamAdmin
from gateway.schemas import StreamTicket
from gateway.tickets import JOB_EVENTS
from services.common.errors import DomainError, NotFound

router = APIRouter(prefix="/jobs", tags=["jobs"])

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
JobId = Path(..., ge=1, le=2**63 - 1)


def public_job(job: dict[str, Any]) -> dict[str, Any]:
    """The catalog's job row as docs/api.md shows it (with `progress` in 0..1)."""
    total = int(job.get("total") or 0)
    settled = int(job.get("done") or 0) + int(job.get("failed") or 0) + int(
        job.get("skipped") or 0)
    progress = min(1.0, settled / total) if total else 0.0
    if job.get("status") in TERMINAL:
        progress = 1.0
    return {
        "id": job["id"],
        "kind": job.get("kind"),
        "status": job.get("status"),
        "total": total,
        "done": int(job.get("done") or 0),
        "failed": int(job.get("failed") or 0),
        "skipped": int(job.get("skipped") or 0),
        "progress": round(progress, 4),
        "near_duplicates": [],
        "items_failed": job.get("items_failed") or [],
        "items_skipped": job.get("items_skipped") or [],
        "error": job.get("error"),
        "created_at": job.get("created_at"),
        "started_at": job.get("started_at"),
        "finished_at": job.get("finished_at"),
    }


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


async def near_duplicates(state: GatewayState, job: dict[str, Any]) -> list[dict[str, Any]]:
    """Images of an ingest job the workers found to be near duplicates of existing ones:
    kept ones (indexed, scored from the two stored vectors) and skipped ones (scored from
    the worker's note on the job item)."""
    ids = (job.get("params") or {}).get("image_ids") or []
    if job.get("kind") != "ingest" or not ids:
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
    return [{"image_id": image_id, "duplicate_of": other, "score": scores.get(image_id),
             "skipped": image_id in noted}
            for image_id, other in pairs]


async def fetch_job(state: GatewayState, job_id: int) -> dict[str, Any]:
    try:
        response = await state.upstreams.catalog.arequest("GET", f"/v1/jobs/{job_id}")
    except DomainError as exc:
        if exc.status == 404:
            raise NotFound(f"job {job_id} does not exist", code="job_not_found") from exc
        raise
    job = response.json()
    out = public_job(job)
    out["near_duplicates"] = await near_duplicates(state, job)
    return out


@router.get("/{job_id}")
async def get_job(state: StateDep, _: AdminUser, job_id: int = JobId) -> dict[str, Any]:
    """A job's progress."""
    return await fetch_job(state, job_id)


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, default=str)}\n\n".encode()


@router.post("/{job_id}/events/ticket", response_model=StreamTicket)
async def job_events_ticket(state: StateDep, principal: AdminUser,
                            job_id: int = JobId) -> StreamTicket:
    """A short-lived ticket that opens this job's event stream, and nothing else."""
    ticket = state.tickets.issue(principal, JOB_EVENTS, str(job_id))
    return StreamTicket(ticket=ticket.value, expires_in=ticket.expires_in)


@router.get("/{job_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def job_events(request: Request, state: StateDep, _: StreamAdmin,
                     job_id: int = JobId) -> StreamingResponse:
    """Server-sent events: `progress` (the job) on every change, `done` at the end.
    EventSource cannot send headers: open it with `?ticket=` from the ticket route."""
    first = await fetch_job(state, job_id)

    async def stream() -> AsyncIterator[bytes]:
        job, last = first, None
        idle = 0.0
        while True:
            if job != last:
                yield _event("progress", job)
                last, idle = job, 0.0
            if job["status"] in TERMINAL:
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

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
