"""Job progress, as JSON and as a server-sent event stream."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import StreamingResponse

from gateway.deps import AdminUser, GatewayState, StateDep, StreamAdmin
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
        "error": job.get("error"),
        "created_at": job.get("created_at"),
        "started_at": job.get("started_at"),
        "finished_at": job.get("finished_at"),
    }


_NEAR = re.compile(r"near_duplicate_of=(\d+) score=([0-9.]+)")


async def near_duplicates(state: GatewayState, job: dict[str, Any]) -> list[dict[str, Any]]:
    """Images of an ingest job the workers found to be near duplicates of existing ones."""
    ids = (job.get("params") or {}).get("image_ids") or []
    if job.get("kind") != "ingest" or not ids:
        return []
    scores: dict[int, float] = {}
    for item in job.get("items_failed") or []:
        match = _NEAR.search(str(item.get("error") or ""))
        if match:
            scores[int(item["image_id"])] = float(match.group(2))
    rows = await state.upstreams.lookup([int(i) for i in ids[:1000]], status=None)
    return [{"image_id": row["id"], "duplicate_of": row["near_duplicate_of"],
             "score": scores.get(int(row["id"]))}
            for row in rows if row.get("near_duplicate_of")]


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


@router.get("/{job_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def job_events(request: Request, state: StateDep, _: StreamAdmin,
                     job_id: int = JobId) -> StreamingResponse:
    """Server-sent events: `progress` (the job) on every change, `done` at the end.
    EventSource cannot send headers: the token may be given as `?access_token=`."""
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
