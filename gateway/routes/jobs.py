"""Job progress, as JSON and as a server-sent event stream (opened with a ticket, since
EventSource sends no token). The work is `gateway/jobs.py`."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request
from fastapi.responses import StreamingResponse

from gateway import jobs
from gateway.deps import AdminUser, StateDep, StreamAdmin
from gateway.schemas import EVENT_STREAM_RESPONSES, JobView, StreamTicket
from gateway.tickets import JOB_EVENTS

router = APIRouter(prefix="/jobs", tags=["jobs"])

JobId = Path(..., ge=1, le=2**63 - 1)


@router.get("/{job_id}", response_model=JobView)
async def get_job(state: StateDep, _: AdminUser, job_id: int = JobId) -> JobView:
    """A job's progress."""
    return await jobs.fetch_job(state, job_id)


@router.post("/{job_id}/events/ticket", response_model=StreamTicket)
async def job_events_ticket(state: StateDep, principal: AdminUser,
                            job_id: int = JobId) -> StreamTicket:
    """A short-lived ticket that opens this job's event stream, and nothing else."""
    ticket = state.tickets.issue(principal, JOB_EVENTS, str(job_id))
    return StreamTicket(ticket=ticket.value, expires_in=ticket.expires_in)


@router.get("/{job_id}/events", response_class=StreamingResponse,
            responses=EVENT_STREAM_RESPONSES)
async def job_events(request: Request, state: StateDep, _: StreamAdmin,
                     job_id: int = JobId) -> StreamingResponse:
    """Server-sent events: `progress` (the job) on every change, `done` at the end.
    EventSource cannot send headers: open it with `?ticket=` from the ticket route."""
    events = await jobs.job_events(request, state, job_id)
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
