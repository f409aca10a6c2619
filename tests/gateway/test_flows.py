"""Upload -> searchable, delete -> gone, through the gateway with real processes: MariaDB
catalog, Redis broker, a Celery worker, index and embedding services."""

from __future__ import annotations

import pytest

from services.common.storage import resolve
from tests.gateway.conftest import files_of, png_bytes
from tests.helpers.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 50


def search_ids(client: object, image_id: int, k: int = 100) -> list[int]:
    response = client.post("/api/v1/search", data={"image_id": str(image_id), "k": str(k)})  # type: ignore[attr-defined]
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["results"]]


def test_upload_search_delete(stack: Stack) -> None:
    blobs = [png_bytes(1000 + i) for i in range(N)]
    with stack.internal("index") as index:
        count_before = index.get("/v1/stats").json()["count"]
    with stack.admin_client() as admin:
        ids: list[int] = []
        for start in (0, 25):
            response = admin.post("/api/v1/admin/images", files=files_of(blobs[start:start + 25]),
                                  data={"tags": "flow,test"})
            assert response.status_code == 202, response.text
            body = response.json()
            assert body["rejected"] == []
            assert not any(img["duplicate"] for img in body["images"])
            ids += [img["id"] for img in body["images"]]
            job = stack.wait_job(admin, body["job_id"])
            assert job["status"] == "succeeded", job
            assert job["done"] == 25
        assert len(set(ids)) == N

        # Exact duplicate: the existing id, no new row.
        again = admin.post("/api/v1/admin/images", files=files_of(blobs[:1]))
        assert again.status_code == 202
        assert again.json()["images"][0] == {**again.json()["images"][0], "id": ids[0],
                                             "duplicate": True}

        # Every image is searchable; each finds itself first with a score of about 1.
        assert set(ids) <= set(search_ids(admin, ids[0], k=200))
        for image_id, blob in list(zip(ids, blobs, strict=True))[::10]:
            response = admin.post("/api/v1/search", files={"file": ("q.png", blob)},
                                  data={"k": "5"})
            assert response.status_code == 200, response.text
            first = response.json()["results"][0]
            assert first["id"] == image_id
            assert first["score"] == pytest.approx(1.0, abs=1e-3)
            assert first["thumbnail_url"] == f"/api/v1/images/{image_id}/thumbnail"
            assert set(first["tags"]) == {"flow", "test"}
            assert admin.get(first["thumbnail_url"]).status_code == 200
            assert admin.get(first["file_url"]).content == blob

        # Tag filter: nothing has tag "other".
        response = admin.post("/api/v1/search", data={"image_id": str(ids[0]), "tags": "other"})
        assert response.json()["results"] == []

        # Tag filters are answered by the index from the tags it holds: the ingest upsert
        # carried them; a tag added by uploading an image again reaches the index at once.
        def tagged(tags: str) -> set[int]:
            response = admin.post("/api/v1/search", data={"image_id": str(ids[0]),
                                                           "k": "200", "tags": tags})
            assert response.status_code == 200, response.text
            return {hit["id"] for hit in response.json()["results"]}

        assert tagged("flow") == set(ids)
        again = admin.post("/api/v1/admin/images", files=files_of(blobs[:3]),
                           data={"tags": "Extra"})
        assert [img["id"] for img in again.json()["images"]] == ids[:3]
        assert tagged("extra") == tagged("EXTRA,flow") == set(ids[:3])
        with stack.internal("index") as index:
            assert index.post("/v1/tags/get", json={"ids": ids[:1]}).json()["tags"] == [
                ["extra", "flow", "test"]]
            # Drift (a tag change the index missed) is repaired by reconcile from the catalog.
            index.put("/v1/tags", json={"ids": ids[:2], "tags": [[], ["stray"]]})
        assert tagged("extra") == {ids[2]} and tagged("stray") == set()  # the row decides
        job = admin.post("/api/v1/admin/reconcile").json()
        assert stack.wait_job(admin, job["job_id"])["status"] == "succeeded"
        assert tagged("extra") == set(ids[:3])
        with stack.internal("index") as index:
            assert index.post("/v1/tags/get", json={"ids": ids[1:2]}).json()["tags"] == [
                ["extra", "flow", "test"]]

        rows = {row["id"]: row for row in admin.get(
            "/api/v1/images", params={"limit": 100}).json()["images"]}

        def gone_everywhere(image_id: int) -> None:
            with stack.internal("catalog") as catalog:
                assert catalog.get(f"/v1/images/{image_id}").status_code == 404
            with stack.internal("index") as index:
                assert index.post("/v1/vectors/get", json={"ids": [image_id]}).json()["ids"] == []
            assert not resolve(stack.data_dir / "images", rows[image_id]["storage_key"]).exists()

        # Delete one: gone from search at once, then file, row and vector gone.
        victim = ids[1]
        response = admin.delete(f"/api/v1/admin/images/{victim}")
        assert response.status_code == 202, response.text
        assert victim not in search_ids(admin, ids[0], k=200)
        assert stack.wait_job(admin, response.json()["job_id"])["status"] == "succeeded"
        gone_everywhere(victim)
        assert tagged("extra") == {ids[0], ids[2]}
        with stack.internal("index") as index:  # its tags left the index with its vector
            assert index.post("/v1/tags/get", json={"ids": [victim]}).json()["tags"] == [[]]

        # Delete a batch of 20.
        batch = ids[2:22]
        response = admin.post("/api/v1/admin/images/delete", json={"ids": batch})
        assert response.status_code == 202, response.text
        assert sorted(response.json()["ids"]) == sorted(batch)
        remaining = search_ids(admin, ids[0], k=200)
        assert not set(batch) & set(remaining)
        assert stack.wait_job(admin, response.json()["job_id"])["status"] == "succeeded"
        for image_id in batch:
            gone_everywhere(image_id)
        left = set(search_ids(admin, ids[0], k=200)) & set(ids)
        assert left == set(ids) - set(batch) - {victim}
        with stack.internal("index") as index:
            assert index.get("/v1/stats").json()["count"] == count_before + N - 21
