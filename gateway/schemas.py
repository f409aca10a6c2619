"""Response bodies of the public API (docs/api.md). Where the gateway passes an internal
service's answer through unchanged, the route declares that service's schema instead."""

from __future__ import annotations

from pydantic import BaseModel, Field


class StreamTicket(BaseModel):
    """Opens one job's event stream: `GET /jobs/{job_id}/events?ticket=<ticket>`."""

    ticket: str
    expires_in: int = Field(description="seconds the ticket stays valid")
