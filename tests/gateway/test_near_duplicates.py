"""Near duplicates reported through the job: a re-encoded copy uploaded with
on_near_duplicate=keep is indexed and listed with the image it copies and a score; with
skip it is skipped, listed too, and leaves no file, vector or searchable row."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.gateway.conftest import count_files
from tests.helpers.procs import REPO
from tests.helpers.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def jpeg_of(png: bytes, quality: int) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def photo() -> bytes:
    """A demo gallery photo, shrunk: unlike the tests' synthetic images, so that its copies
    are nearer to it than to anything else in the shared stack."""
    source = sorted((REPO / "gallery" / "demo").glob("*.jpg"))[0]
    out = io.BytesIO()
    Image.open(source).convert("RGB").resize((240, 180)).save(out, format="PNG")
    return out.getvalue()


def test_near_duplicate_kept_or_skipped_is_reported_with_its_score(stack: Stack) -> None:
    original = photo()
    with stack.admin_client() as admin:
        first = admin.post("/api/v1/admin/images", files={"file": ("orig.png", original)})
        assert first.status_code == 202, first.text
        original_id = first.json()["images"][0]["id"]
        job = stack.wait_job(admin, first.json()["job_id"])
        # (With random weights it may itself be near something already there: not asserted.)
        assert job["status"] == "succeeded"

        kept = admin.post("/api/v1/admin/images", data={"on_near_duplicate": "keep"},
                          files={"file": ("copy.jpg", jpeg_of(original, 92))})
        assert kept.status_code == 202, kept.text
        copy_id = kept.json()["images"][0]["id"]
        job = stack.wait_job(admin, kept.json()["job_id"])
        assert (job["status"], job["done"], job["skipped"]) == ("succeeded", 1, 0), job
        [pair] = job["near_duplicates"]
        assert (pair["image_id"], pair["duplicate_of"], pair["skipped"]) == (
            copy_id, original_id, False)
        assert 0.97 <= pair["score"] <= 1.0 + 1e-4
        assert admin.get(f"/api/v1/images/{copy_id}").json()["status"] == "indexed"

        files_before = count_files(stack.data_dir / "images")
        skipped = admin.post("/api/v1/admin/images", data={"on_near_duplicate": "skip"},
                             files={"file": ("copy2.jpg", jpeg_of(original, 85))})
        assert skipped.status_code == 202, skipped.text
        skip_id = skipped.json()["images"][0]["id"]
        job = stack.wait_job(admin, skipped.json()["job_id"])
        assert (job["status"], job["done"], job["skipped"]) == ("succeeded", 0, 1), job
        [pair] = job["near_duplicates"]
        assert (pair["image_id"], pair["skipped"]) == (skip_id, True)
        assert pair["duplicate_of"] in (original_id, copy_id)
        assert 0.97 <= pair["score"] <= 1.0 + 1e-4
        assert job["items_skipped"][0]["image_id"] == skip_id
        # The copy is gone: no file, no vector, not searchable.
        assert count_files(stack.data_dir / "images") == files_before
        assert admin.get(f"/api/v1/images/{skip_id}").json()["status"] == "removed"
        hits = admin.post("/api/v1/search", files={"file": ("q.png", original)},
                          data={"k": "5"}).json()["results"]
        assert skip_id not in [hit["id"] for hit in hits]
        assert hits[0]["id"] in (original_id, copy_id)
    with stack.internal("index") as index:
        assert index.post("/v1/vectors/get", json={"ids": [skip_id]}).json()["ids"] == []
