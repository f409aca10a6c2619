"""Job progress as server-sent events, reindex through the API, stats, and what viewers see."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.gateway.conftest import files_of, png_bytes
from tests.helpers.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def read_events(response: httpx.Response) -> list[tuple[str, dict[str, object]]]:
    events, name = [], ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[len("data: "):])))
            if name == "done":
                break
    return events


def test_events_reindex_stats_and_visibility(stack: Stack) -> None:
    with stack.admin_client() as admin:
        body = admin.post("/api/v1/admin/images",
                          files=files_of([png_bytes(31_000 + i) for i in range(3)], "sse")).json()
        job_id = body["job_id"]
        token = admin.headers["Authorization"].split()[1]
        ticket = admin.post(f"/api/v1/jobs/{job_id}/events/ticket").json()["ticket"]
    url = f"{stack.url}/api/v1/jobs/{job_id}/events"
    # EventSource cannot send headers: a ticket for this stream comes in the query string.
    with httpx.stream("GET", url, params={"ticket": ticket}, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = read_events(response)
    assert events[0][0] == "progress" and events[-1][0] == "done"
    assert events[-1][1]["status"] == "succeeded" and events[-1][1]["progress"] == 1.0
    assert events[-1][1]["done"] == 3
    assert httpx.get(url).status_code == 401
    # Login tokens never go in URLs: one in the query opens nothing.
    assert httpx.get(url, params={"access_token": token}).json()["error"]["code"] == \
        "not_authenticated"
    assert httpx.get(url, params={"ticket": token}).json()["error"]["code"] == \
        "invalid_ticket"

    with stack.admin_client() as admin:
        reindex = admin.post("/api/v1/admin/reindex")
        assert reindex.status_code == 202
        job = stack.wait_job(admin, reindex.json()["job_id"])
        assert job["kind"] == "reindex" and job["status"] == "succeeded", job
        stats = admin.get("/api/v1/admin/stats").json()
        assert stats["catalog"]["images"]["indexed"] == stats["index"]["count"]
        assert stats["model"]["random_weights"] is True
        new_id = body["images"][0]["id"]
        hits = admin.post("/api/v1/search", data={"image_id": str(new_id), "k": "1"}).json()
        assert hits["results"][0]["id"] == new_id

        # A row that is not indexed is invisible to viewers and anonymous callers.
        pending = admin.post("/api/v1/admin/images/delete", json={"ids": [new_id]}).json()
        assert pending["ids"] == [new_id]
        assert admin.get(f"/api/v1/images/{new_id}").status_code in (200, 404)
    with stack.client() as anonymous:
        assert anonymous.get(f"/api/v1/images/{new_id}").status_code == 404
        assert anonymous.get(f"/api/v1/images/{new_id}/file").status_code == 404
        listed = anonymous.get("/api/v1/images", params={"limit": 500, "status": "deleting"})
        assert all(img["status"] == "indexed" for img in listed.json()["images"])
        assert new_id not in [img["id"] for img in listed.json()["images"]]
        config = anonymous.get("/api/v1/config").json()
        assert config["public_search"] is True and config["model"]["dim"] == 384
        assert config["limits"]["max_files_per_request"] == 100
