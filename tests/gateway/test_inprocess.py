"""The gateway's own logic against in-process stand-ins of the services it calls
(tests/gateway/upstreams.py): search, upload, region search, admin routes and the event
stream's tickets, without MariaDB, Redis or a model."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.main import create_app
from services.common.settings import common_settings
from tests.gateway.conftest import files_of, png_bytes
from tests.gateway.upstreams import StandIns

ADMIN = ("ada", "correct horse battery")


@pytest.fixture
def standins() -> StandIns:
    services = StandIns()
    services.catalog.add_user(*ADMIN, role="admin")
    services.catalog.add_user("vic", "viewer password", role="viewer")
    return services


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
           standins: StandIns) -> Iterator[TestClient]:
    monkeypatch.setenv("IMGSEARCH_INTERNAL_TOKEN", "t" * 24)
    monkeypatch.setenv("IMGSEARCH_GATEWAY_JWT_SECRET", "s" * 40)
    monkeypatch.setenv("IMGSEARCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMGSEARCH_GATEWAY_WEB_DIST", str(tmp_path / "dist"))
    monkeypatch.setenv("IMGSEARCH_GATEWAY_SESSION_CHECK_TTL_S", "0")
    monkeypatch.setenv("IMGSEARCH_GATEWAY_JOB_POLL_S", "0.05")
    app = create_app(upstreams=standins.upstreams(), producer=standins.producer)
    with TestClient(app) as test_client:
        yield test_client


def login(client: TestClient, username: str, password: str) -> dict[str, str]:
    answer = client.post("/api/v1/auth/login", json={"username": username,
                                                      "password": password})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def upload(client: TestClient, standins: StandIns, blobs: list[bytes],
           tags: str | None = None) -> dict[str, object]:
    data = {"tags": tags} if tags else None
    answer = client.post("/api/v1/admin/images", files=files_of(blobs), data=data,
                         headers=login(client, *ADMIN))
    assert answer.status_code == 202, answer.text
    standins.ingest(common_settings().images_dir)
    body: dict[str, object] = answer.json()
    return body


def test_upload_queues_one_job_and_search_finds_the_image(client: TestClient,
                                                          standins: StandIns) -> None:
    blobs = [png_bytes(i) for i in range(3)]
    body = upload(client, standins, blobs, tags="cats")
    assert [image["duplicate"] for image in body["images"]] == [False] * 3  # type: ignore[index]
    assert [t.name for t in standins.producer.sent] == ["imgsearch.ingest"]
    assert standins.producer.sent[0].kwargs["image_ids"] == [1, 2, 3]
    # The three rows in one catalog request.
    assert standins.catalog.calls["POST /v1/images/batch"] == 1
    assert standins.catalog.calls["POST /v1/images"] == 0

    again = client.post("/api/v1/admin/images", files=files_of([*blobs[:1], png_bytes(4)]),
                        data={"tags": "pets"}, headers=login(client, *ADMIN)).json()
    assert again["images"][0]["duplicate"] is True and again["images"][0]["id"] == 1
    assert again["images"][1]["duplicate"] is False and again["images"][1]["id"] == 4
    # The existing image's new tag is in the catalog and in the index at once.
    assert standins.catalog.images[1]["tags"] == ["cats", "pets"]
    assert standins.index.tags[1] == {"cats", "pets"}
    standins.ingest(common_settings().images_dir)

    page = client.post("/api/v1/search", files={"file": ("q.png", blobs[1])},
                       data={"k": "2"}).json()
    assert page["results"][0]["id"] == 2 and page["results"][0]["score"] == pytest.approx(1)
    assert page["k"] == 2 and len(page["results"]) == 2 and page["query"]["kind"] == "image"
    assert page["results"][0]["thumbnail_url"] == "/api/v1/images/2/thumbnail"

    by_id = client.post("/api/v1/search", json={"image_id": 3, "k": 1}).json()
    assert by_id["results"][0]["id"] == 3 and by_id["query"]["kind"] == "id"
    tagged = client.post("/api/v1/search", data={"image_id": "1", "tags": "dogs"}).json()
    assert tagged["results"] == [] and tagged["total"] == 0
    # The filter is the index's: the tags it holds, named in the search.
    cats = client.post("/api/v1/search", data={"image_id": "1", "tags": "Cats"}).json()
    assert sorted(r["id"] for r in cats["results"]) == [1, 2, 3]
    standins.index.tags[2].clear()  # a stale copy in the index hides an image, never adds one
    cats = client.post("/api/v1/search", data={"image_id": "1", "tags": "cats"}).json()
    assert sorted(r["id"] for r in cats["results"]) == [1, 3]


def test_deleting_hides_an_image_at_once(client: TestClient, standins: StandIns) -> None:
    upload(client, standins, [png_bytes(10), png_bytes(11)])
    admin = login(client, *ADMIN)
    deleted = client.post("/api/v1/admin/images/delete", json={"ids": [1, 99]}, headers=admin)
    assert deleted.status_code == 202 and deleted.json()["ids"] == [1]
    assert standins.producer.sent[-1].name == "imgsearch.delete"
    page = client.post("/api/v1/search", files={"file": ("q.png", png_bytes(10))}).json()
    assert [r["id"] for r in page["results"]] == [2]
    assert client.get("/api/v1/images/1").status_code == 404
    # Viewers never see admin-only fields; admins do.
    assert "sha256" not in client.get("/api/v1/images/2").json()
    assert client.get("/api/v1/images/2", headers=admin).json()["sha256"]
    listed = client.get("/api/v1/images").json()
    assert [image["id"] for image in listed["images"]] == [2] and listed["total"] == 1


def test_region_search_and_segment(client: TestClient, standins: StandIns) -> None:
    upload(client, standins, [png_bytes(20), png_bytes(21)])
    prompts = '{"points": [{"x": 5, "y": 5, "label": 1}]}'
    mask = client.post("/api/v1/segment", data={"prompts": prompts, "image_id": "1"})
    assert mask.status_code == 200, mask.text
    assert mask.json()["box"] == [0, 0, 48, 80] and mask.json()["encoder_cached"] is False
    # The next click on the same image goes by hash: the bytes do not travel again.
    sha = mask.json()["image_sha256"]
    again = client.post("/api/v1/segment", data={"prompts": prompts, "image_sha256": sha})
    assert again.status_code == 200 and again.json()["encoder_cached"] is True
    page = client.post("/api/v1/search/region",
                       data={"prompts": prompts, "image_id": "1", "mode": "crop", "k": "5"})
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["mode"] == "crop" and body["query"]["kind"] == "region"
    assert body["box"] == [0, 0, 48, 80] and len(body["results"]) == 2


def test_admin_stats_config_and_refusals(client: TestClient, standins: StandIns) -> None:
    upload(client, standins, [png_bytes(30)])
    admin = login(client, *ADMIN)
    stats = client.get("/api/v1/admin/stats", headers=admin).json()
    assert stats["catalog"]["images"] == {"indexed": 1} and stats["index"]["count"] == 1
    assert stats["model"]["dim"] == 8
    config = client.get("/api/v1/config").json()
    assert config["model"]["dim"] == 8 and config["segmentation"]["available"] is False
    viewer = login(client, "vic", "viewer password")
    refused = client.post("/api/v1/admin/reindex", headers=viewer)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "admin_required"
    assert client.post("/api/v1/admin/reindex").json()["error"]["code"] == "not_authenticated"
    reindex = client.post("/api/v1/admin/reindex", headers=admin)
    assert reindex.status_code == 202
    assert standins.producer.sent[-1].name == "imgsearch.reindex"
    assert client.get("/api/v1/tags").json() == {"tags": []}


def read_events(client: TestClient, url: str) -> list[str]:
    with client.stream("GET", url) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return [line for line in response.iter_lines() if line.startswith("event: ")]


def test_event_stream_opens_with_a_ticket_only(client: TestClient,
                                               standins: StandIns) -> None:
    body = upload(client, standins, [png_bytes(40)])
    job_id = body["job_id"]
    standins.catalog.jobs[job_id].update(status="succeeded", done=1)  # type: ignore[index]
    admin = login(client, *ADMIN)
    token = admin["Authorization"].split()[1]
    ticket = client.post(f"/api/v1/jobs/{job_id}/events/ticket", headers=admin).json()
    assert ticket["expires_in"] == 60

    events = read_events(client, f"/api/v1/jobs/{job_id}/events?ticket={ticket['ticket']}")
    assert events == ["event: progress", "event: done"]
    # Reconnects within its lifetime work (EventSource retries with the same URL).
    assert read_events(client, f"/api/v1/jobs/{job_id}/events?ticket={ticket['ticket']}")

    def code(url: str, **headers: str) -> str:
        answer = client.get(url, headers=headers)
        assert answer.status_code == 401, answer.text
        return str(answer.json()["error"]["code"])

    # Another job's stream, a login token in the URL, the ticket as a token elsewhere.
    other = client.post("/api/v1/admin/reconcile", headers=admin).json()["job_id"]
    assert code(f"/api/v1/jobs/{other}/events?ticket={ticket['ticket']}") == "invalid_ticket"
    assert code(f"/api/v1/jobs/{job_id}/events?access_token={token}") == "not_authenticated"
    assert code(f"/api/v1/jobs/{job_id}/events?ticket={token}") == "invalid_ticket"
    assert code(f"/api/v1/jobs/{job_id}?ticket={ticket['ticket']}") == "not_authenticated"
    assert code(f"/api/v1/jobs/{job_id}",
                Authorization=f"Bearer {ticket['ticket']}") == "invalid_token"
    # A viewer gets no ticket.
    viewer = login(client, "vic", "viewer password")
    assert client.post(f"/api/v1/jobs/{job_id}/events/ticket",
                       headers=viewer).status_code == 403

    # Revoking the admin's tokens (a role change bumps the version) revokes the ticket.
    standins.catalog.users["ada"]["token_version"] += 1
    assert code(f"/api/v1/jobs/{job_id}/events?ticket={ticket['ticket']}") == "token_revoked"


def test_an_expired_ticket_is_refused(client: TestClient, standins: StandIns,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    body = upload(client, standins, [png_bytes(50)])
    admin = login(client, *ADMIN)
    ticket = client.post(f"/api/v1/jobs/{body['job_id']}/events/ticket",
                         headers=admin).json()["ticket"]
    later = time.time() + 61
    monkeypatch.setattr("gateway.tickets.time.time", lambda: later)
    answer = client.get(f"/api/v1/jobs/{body['job_id']}/events?ticket={ticket}")
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "ticket_expired"
