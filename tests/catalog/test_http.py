"""The real catalog process over HTTP on each backend: the routes, the token, the errors."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from services.catalog.db.models import Base
from services.catalog.repository import counts
from tests.catalog.conftest import BACKENDS, sha
from tests.helpers.procs import ServiceProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=BACKENDS)
def served(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """One catalog process per backend for the module: (base URL, token, database URL)."""
    tmp = tmp_path_factory.mktemp("catalog-http")
    token = secrets.token_urlsafe(24)
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp / 'catalog.db'}"
        else:
            url = stack.enter_context(_mysql_database(request.getfixturevalue("mysql_server_url")))
        env = {
            "IMGSEARCH_INTERNAL_TOKEN": token,
            "IMGSEARCH_DATA_DIR": str(tmp / "data"),
            "IMGSEARCH_DATABASE_URL": url,
            "IMGSEARCH_CATALOG_ARGON2_MEMORY_KIB": "1024",
            "IMGSEARCH_CATALOG_ARGON2_TIME_COST": "1",
            "IMGSEARCH_CATALOG_MAX_PAGE_SIZE": "20",
            "IMGSEARCH_LOG_FORMAT": "text",
        }
        proc = ServiceProcess("catalog", env=env, log_dir=tmp).start(timeout=60)
        stack.callback(proc.stop)
        yield proc.url, token, url


@contextmanager
def _mysql_database(server_url: str) -> Iterator[str]:
    name = f"imgsearch_http_{secrets.token_hex(4)}"
    server = make_url(server_url).set(database="")
    admin = sa.create_engine(server)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        admin.dispose()


@pytest.fixture
def catalog(served: tuple[str, str, str]) -> Iterator[httpx.Client]:
    """A client of the module's catalog process, its tables emptied first."""
    base_url, token, db_url = served
    engine = sa.create_engine(db_url)
    with Session(engine) as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(table.delete())
        counts.recount(session)  # the kept counts of the emptied table: zeros
        session.commit()
    engine.dispose()
    with httpx.Client(base_url=base_url, timeout=30,
                      headers={"X-Internal-Token": token}) as client:
        yield client


def _image(n: int, **extra: Any) -> dict[str, Any]:
    digest = sha(n)
    return {"sha256": digest, "original_filename": f"../../etc/{n}.jpg",
            "storage_key": f"{digest[:2]}/{digest}.jpg", "mime": "image/jpeg", "width": 8,
            "height": 6, "bytes": 321, **extra}


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    return body


def test_token_is_required(catalog: httpx.Client) -> None:
    assert catalog.get("/healthz", headers={"X-Internal-Token": ""}).status_code == 200
    for headers in ({"X-Internal-Token": ""}, {"X-Internal-Token": "forged-token-1234567"}):
        r = catalog.get("/v1/stats", headers=headers)
        assert _error(r, 401)["code"] == "invalid_internal_token"
        r = catalog.post("/v1/images", json=_image(1), headers=headers)
        assert _error(r, 401)["code"] == "invalid_internal_token"
    assert catalog.get("/v1/stats").json()["total"] == 0
    ready = catalog.get("/readyz").json()
    assert ready["checks"] == {"database": True, "schema": True}


def test_image_routes(catalog: httpx.Client) -> None:
    r = catalog.post("/v1/images", json=_image(1, uploader="admin", tags=["Beach"]))
    assert r.status_code == 201
    image = r.json()["image"]
    assert r.json()["created"] is True
    assert set(image) == {"id", "sha256", "original_filename", "storage_key", "thumbnail_key",
                          "mime", "width", "height", "bytes", "status", "model_id", "error",
                          "near_duplicate_of", "uploader", "tags", "created_at", "updated_at"}
    assert (image["status"], image["tags"], image["original_filename"]) == (
        "pending", ["beach"], "../../etc/1.jpg")
    again = catalog.post("/v1/images", json=_image(1))
    assert again.status_code == 200
    assert again.json() == {"image": image, "created": False}
    second = catalog.post("/v1/images", json=_image(2)).json()["image"]

    assert catalog.get(f"/v1/images/{image['id']}").json() == image
    assert _error(catalog.get("/v1/images/999"), 404)["code"] == "image_not_found"

    r = catalog.post(f"/v1/images/{image['id']}/transition",
                     json={"from": "pending", "to": "indexed", "model_id": "m:1",
                           "thumbnail_key": "th/1.webp"})
    assert r.json()["status"] == "indexed" and r.json()["model_id"] == "m:1"
    r = catalog.post(f"/v1/images/{image['id']}/transition",
                     json={"from": "pending", "to": "failed"})
    assert _error(r, 409) == {"code": "status_conflict", "message": r.json()["error"]["message"],
                              "detail": {"id": image["id"], "current": "indexed",
                                         "expected": "pending"}}
    r = catalog.post(f"/v1/images/{image['id']}/transition",
                     json={"from": "indexed", "to": "pending"})
    assert _error(r, 422)["code"] == "invalid_transition"

    r = catalog.post("/v1/images/lookup", json={"ids": [second["id"], 77, image["id"]]})
    assert [i["id"] for i in r.json()["images"]] == [second["id"], image["id"]]
    r = catalog.post("/v1/images/lookup", json={"ids": [second["id"], image["id"]],
                                                "status": "indexed"})
    assert [i["id"] for i in r.json()["images"]] == [image["id"]]

    listed = catalog.get("/v1/images", params={"status": "pending", "limit": 5}).json()
    assert listed["total"] == 1 and listed["images"][0]["id"] == second["id"]
    listed = catalog.get("/v1/images", params=[("status", "pending"), ("status", "indexed"),
                                               ("order", "asc")]).json()
    assert [i["id"] for i in listed["images"]] == [image["id"], second["id"]]
    listed = catalog.get("/v1/images", params={"tag": "beach", "uploader": "admin",
                                               "created_from": "2000-01-01T00:00:00Z"}).json()
    assert listed["total"] == 1
    assert catalog.get("/v1/images", params={"created_to": "2000-01-01"}).json()["total"] == 0
    # Keyset paging: `next` of a full page is the `after` of the following one.
    first = catalog.get("/v1/images", params={"limit": 1, "total": "false"}).json()
    assert first["total"] is None and first["images"][0]["id"] == second["id"]
    following = catalog.get("/v1/images", params={"limit": 1, "after": first["next"]}).json()
    assert [i["id"] for i in following["images"]] == [image["id"]] and following["total"] == 2
    assert catalog.get("/v1/images", params={"after": following["next"]}).json()["images"] == []
    assert _error(catalog.get("/v1/images", params={"after": "bm90IGEgY3Vyc29y"}), 422)[
        "code"] == "invalid_cursor"
    assert _error(catalog.get("/v1/images", params={"limit": 21}), 422)["code"] == \
        "invalid_request"
    assert _error(catalog.get("/v1/images", params={"status": "bogus"}), 422)["code"] == \
        "invalid_request"

    assert catalog.post("/v1/images/ids", json={"tags": ["beach"]}).json() == {
        "ids": [image["id"]]}
    r = catalog.post(f"/v1/images/{second['id']}/tags", json={"tags": ["beach", "sea"]})
    assert r.json()["tags"] == ["beach", "sea"]
    r = catalog.request("DELETE", f"/v1/images/{second['id']}/tags", json={"tags": ["sea"]})
    assert r.json()["tags"] == ["beach"]
    assert _error(catalog.post(f"/v1/images/{second['id']}/tags", json={"tags": ["a,b"]}),
                  422)["code"] == "invalid_tag"
    assert catalog.get("/v1/tags").json() == {"tags": [{"name": "beach", "count": 2},
                                                       {"name": "sea", "count": 0}]}
    stats = catalog.get("/v1/stats").json()
    assert stats == {"images": {"pending": 1, "indexed": 1, "failed": 0, "deleting": 0,
                                "removed": 0}, "total": 2}
    assert catalog.get("/v1/images/stale", params={"older_than_s": 0}).json()["images"][0][
        "id"] == second["id"]

    r = catalog.post("/v1/images/transition",
                     json={"ids": [image["id"], second["id"], 404], "from": ["indexed"],
                           "to": "deleting"})
    assert r.json() == {"changed": [image["id"]], "unchanged": [second["id"], 404]}
    assert _error(catalog.delete(f"/v1/images/{second['id']}"), 409)["code"] == \
        "status_conflict"
    assert catalog.delete(f"/v1/images/{image['id']}").json() == {"id": image["id"],
                                                                 "deleted": True}
    assert _error(catalog.delete(f"/v1/images/{image['id']}"), 404)["code"] == \
        "image_not_found"


def test_bad_bodies_are_422_and_change_nothing(catalog: httpx.Client) -> None:
    for body in ({**_image(3), "sha256": "XYZ"}, {**_image(3), "width": 0},
                 {**_image(3), "status": "indexed"}, {"sha256": sha(3)}):
        assert _error(catalog.post("/v1/images", json=body), 422)["code"] == "invalid_request"
    r = catalog.post("/v1/images", content=b"not json", headers={"Content-Type":
                                                                 "application/json"})
    assert _error(r, 422)["code"] == "invalid_request"
    assert catalog.get("/v1/stats").json()["total"] == 0


def test_job_routes(catalog: httpx.Client) -> None:
    r = catalog.post("/v1/jobs", json={"kind": "bulk_ingest", "total": 3, "creator": "admin",
                                       "params": {"folder": "gallery/images"}})
    assert r.status_code == 201
    job = r.json()
    assert set(job) == {"id", "kind", "status", "total", "done", "failed", "skipped",
                        "creator", "params", "error", "created_at", "started_at",
                        "finished_at", "items_failed", "items_skipped"}
    assert job["status"] == "queued"
    job_id = job["id"]
    r = catalog.post(f"/v1/jobs/{job_id}/items", json={"image_ids": [1, 2, 3]})
    assert r.json()["status"] == "running"
    for _ in range(2):
        r = catalog.post(f"/v1/jobs/{job_id}/items/1", json={"state": "done"})
    r = catalog.post(f"/v1/jobs/{job_id}/items/2", json={"state": "failed", "error": "bad"})
    job = r.json()
    assert (job["done"], job["failed"], job["skipped"]) == (1, 1, 0)
    assert job["items_failed"] == [{"image_id": 2, "error": "bad"}]
    r = catalog.post(f"/v1/jobs/{job_id}/items/3", json={"state": "exploded"})
    assert _error(r, 422)["code"] == "invalid_request"
    r = catalog.post(f"/v1/jobs/{job_id}/finish", json={"status": "succeeded"})
    assert r.json()["status"] == "succeeded" and r.json()["finished_at"]
    assert catalog.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
    listed = catalog.get("/v1/jobs", params={"kind": "bulk_ingest"}).json()["jobs"]
    assert [j["id"] for j in listed] == [job_id]
    assert catalog.get("/v1/jobs", params={"status": "queued"}).json() == {"jobs": []}
    assert _error(catalog.get("/v1/jobs/9999"), 404)["code"] == "job_not_found"
    assert _error(catalog.post("/v1/jobs/9999/items/1", json={"state": "done"}), 404)[
        "code"] == "job_not_found"
    assert _error(catalog.post("/v1/jobs", json={"kind": "mine_bitcoin"}), 422)["code"] == \
        "invalid_request"


def test_user_routes(catalog: httpx.Client) -> None:
    r = catalog.post("/v1/users", json={"username": "root", "password": "s3cret-pass",
                                        "role": "admin"})
    assert r.status_code == 201
    user = r.json()
    assert set(user) == {"id", "username", "role", "created_at", "last_login_at",
                         "token_version"}
    assert "password" not in r.text and "argon2" not in r.text
    r = catalog.post("/v1/users", json={"username": "root", "password": "another-pass"})
    assert _error(r, 409)["code"] == "user_exists"
    r = catalog.post("/v1/users", json={"username": "short", "password": "x"})
    assert _error(r, 422)["code"] == "weak_password"
    r = catalog.post("/v1/users", json={"username": "../etc", "password": "long-enough"})
    assert _error(r, 422)["code"] == "invalid_request"
    assert catalog.get("/v1/users/root").json()["role"] == "admin"
    assert _error(catalog.get("/v1/users/ghost"), 404)["code"] == "user_not_found"
    r = catalog.post("/v1/users/verify", json={"username": "root", "password": "s3cret-pass"})
    assert r.status_code == 200 and r.json()["last_login_at"]
    for creds in ({"username": "root", "password": "wrong"},
                  {"username": "ghost", "password": "s3cret-pass"}):
        r = catalog.post("/v1/users/verify", json=creds)
        assert _error(r, 401)["code"] == "invalid_credentials"
    assert [u["username"] for u in catalog.get("/v1/users").json()["users"]] == ["root"]
    # Changes bump the token version; the only admin stays.
    r = catalog.patch("/v1/users/root", json={"password": "s3cret-pass-2"})
    assert r.status_code == 200 and r.json()["token_version"] == 1
    assert _error(catalog.patch("/v1/users/root", json={}), 422)["code"] == "invalid_request"
    assert _error(catalog.patch("/v1/users/root", json={"password": "password1"}), 422)[
        "code"] == "weak_password"
    assert _error(catalog.patch("/v1/users/root", json={"role": "viewer"}), 409)[
        "code"] == "last_admin"
    assert _error(catalog.delete("/v1/users/root"), 409)["code"] == "last_admin"
    catalog.post("/v1/users", json={"username": "temp", "password": "temp-password-1"})
    assert catalog.delete("/v1/users/temp").status_code == 204
    assert _error(catalog.delete("/v1/users/temp"), 404)["code"] == "user_not_found"
