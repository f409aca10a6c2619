"""Image files for <img> tags when search needs a login: JSON answers carry short-lived
signed `thumbnail_url`/`file_url` that work without a token, for the role signed in; admins
get them for images not indexed yet; viewers still never see such images. And `q` on the
image list (part of the original filename)."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from gateway.signing import UrlSigner
from services.common.storage import image_key
from tests.gateway.conftest import JWT_SECRET, files_of, png_bytes
from tests.helpers.procs import ServiceProcess
from tests.helpers.stack import Stack, clean_environ

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def private_gateway(stack: Stack) -> Iterator[str]:
    """A second gateway on the same services, with `gateway.public_search: false`."""
    env = {**clean_environ(), **stack.env, "IMGSEARCH_GATEWAY_JWT_SECRET": JWT_SECRET,
           "IMGSEARCH_GATEWAY_PUBLIC_SEARCH": "false",
           "IMGSEARCH_GATEWAY_LOGIN_RATE_PER_MINUTE": "600",
           "IMGSEARCH_GATEWAY_SIGNED_URL_TTL_S": "600"}
    proc = ServiceProcess("gateway", env, stack.log_dir).start(60)
    try:
        yield proc.url
    finally:
        proc.stop()


def login(url: str, username: str, password: str) -> httpx.Client:
    token = httpx.post(f"{url}/api/v1/auth/login", timeout=30,
                       json={"username": username, "password": password}).json()["access_token"]
    return httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {token}"})


def pending_row(stack: Stack) -> int:
    """A catalog row that stays `pending` (nothing queued for it), with its file on disk."""
    data = png_bytes(909_000 + secrets.randbelow(1000), size=(64, 48))
    sha = hashlib.sha256(data).hexdigest()
    key = image_key(sha, "png")
    path = stack.data_dir / "images" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    with stack.internal("catalog") as catalog:
        row = catalog.post("/v1/images", json={
            "sha256": sha, "original_filename": "waiting.png", "storage_key": key,
            "mime": "image/png", "width": 64, "height": 48, "bytes": len(data)}).json()
    image_id: int = row["image"]["id"]
    return image_id


def test_signed_image_urls_when_search_needs_a_login(stack: Stack, private_gateway: str) -> None:
    url = private_gateway
    with stack.admin_client() as admin:
        body = admin.post("/api/v1/admin/images",
                          files=files_of([png_bytes(606_000 + i) for i in range(2)], "signed"))
        assert stack.wait_job(admin, body.json()["job_id"])["status"] == "succeeded"
        ids = [img["id"] for img in body.json()["images"]]
    stack.create_user("signed-viewer", "viewer-password-1")

    anonymous = httpx.Client(base_url=url, timeout=60)
    assert anonymous.post("/api/v1/search", data={"image_id": str(ids[0])}).json()[
        "error"]["code"] == "not_authenticated"
    assert anonymous.get(f"/api/v1/images/{ids[0]}/thumbnail").json()["error"]["code"] == \
        "not_authenticated"

    with login(url, "signed-viewer", "viewer-password-1") as viewer:
        page = viewer.post("/api/v1/search", data={"image_id": str(ids[0]), "k": "3"}).json()
        hit = page["results"][0]
        assert hit["id"] == ids[0]
        for kind in ("thumbnail", "file"):
            signed = hit[f"{kind}_url"]
            query = parse_qs(urlsplit(signed).query)
            assert query["role"] == ["viewer"] and "access_token" not in query
            assert 600 <= int(query["exp"][0]) - time.time() <= 600 + 150 + 5
            # An <img> tag sends no token: the signed URL alone loads the image.
            got = anonymous.get(signed)
            assert got.status_code == 200, got.text
            assert got.headers["content-type"].startswith("image/")
        file = anonymous.get(hit["file_url"]).content
        assert file == viewer.get(f"/api/v1/images/{ids[0]}/file").content

        # Tampered, moved to another image or kind, or expired: refused.
        thumb = hit["thumbnail_url"]
        for forged in (thumb.replace("role=viewer", "role=admin"),
                       thumb.replace(f"/images/{ids[0]}/", f"/images/{ids[1]}/"),
                       thumb.replace("/thumbnail?", "/file?"),
                       thumb[:-4] + ("0000" if not thumb.endswith("0000") else "1111")):
            refused = anonymous.get(forged)
            assert refused.status_code == 401, forged
            assert refused.json()["error"]["code"] == "invalid_signature"
        signer = UrlSigner(JWT_SECRET, ttl_s=600)
        expired = signer.url(ids[0], "thumbnail", "viewer", now=time.time() - 2000)
        assert anonymous.get(expired).json()["error"]["code"] == "signature_expired"
        too_long = UrlSigner(JWT_SECRET, ttl_s=86400).url(ids[0], "thumbnail", "viewer")
        assert anonymous.get(too_long).json()["error"]["code"] == "invalid_signature"

        listed = viewer.get("/api/v1/images", params={"limit": 5}).json()["images"]
        assert listed and all("sig=" in img["thumbnail_url"] for img in listed)
        # Keyset paging through the gateway gives the same rows as one long page.
        first = viewer.get("/api/v1/images", params={"limit": 1, "total": "false"}).json()
        assert first["total"] is None and first["next"]
        second = viewer.get("/api/v1/images", params={"limit": 1,
                                                       "after": first["next"]}).json()
        assert [i["id"] for i in first["images"] + second["images"]] == [
            i["id"] for i in listed[:2]]
        assert anonymous.get(listed[0]["thumbnail_url"]).status_code == 200
        one = viewer.get(f"/api/v1/images/{ids[1]}").json()
        assert anonymous.get(one["file_url"]).status_code == 200

    waiting = pending_row(stack)
    try:
        # Admins see images that are not indexed, with signed URLs even where search is
        # public (the plain URL is for viewers, who may not see this image).
        for base in (url, stack.url):
            with login(base, stack.admin_username, stack.admin_password) as admin:
                rows = admin.get("/api/v1/images", params={"status": "pending",
                                                            "limit": 500}).json()["images"]
                [row] = [r for r in rows if r["id"] == waiting]
                assert "role=admin" in row["thumbnail_url"]
                got = httpx.get(base + row["thumbnail_url"], timeout=60)
                assert got.status_code == 200 and got.headers["content-type"] == "image/png"
        # A viewer-signed URL never shows an image that is not indexed.
        as_viewer = UrlSigner(JWT_SECRET, ttl_s=600).url(waiting, "file", "viewer")
        assert anonymous.get(as_viewer).json()["error"]["code"] == "image_not_found"
    finally:
        with stack.admin_client() as admin:
            job = admin.delete(f"/api/v1/admin/images/{waiting}").json()["job_id"]
            assert stack.wait_job(admin, job)["status"] == "succeeded"
        anonymous.close()

    # Public search: plain URLs for indexed images, loaded without a token.
    with stack.client() as public:
        page = public.post("/api/v1/search", data={"image_id": str(ids[0]), "k": "1"}).json()
        assert page["results"][0]["thumbnail_url"] == f"/api/v1/images/{ids[0]}/thumbnail"


def test_image_list_filters_by_filename(stack: Stack) -> None:
    tag = f"q{secrets.token_hex(3)}"
    with stack.admin_client() as admin:
        files = [("file", (name, png_bytes(717_000 + i))) for i, name in
                 enumerate(["Harbour_At_Dusk.png", "harbour-noon.png", "harbourXat.png"])]
        body = admin.post("/api/v1/admin/images", files=files, data={"tags": tag}).json()
        assert stack.wait_job(admin, body["job_id"])["status"] == "succeeded"
    with stack.client() as client:
        def names(q: str) -> set[str]:
            response = client.get("/api/v1/images", params={"q": q, "tag": tag})
            assert response.status_code == 200, response.text
            return {img["original_filename"] for img in response.json()["images"]}

        assert names("HARBOUR") == {"Harbour_At_Dusk.png", "harbour-noon.png", "harbourXat.png"}
        assert names("r_at") == {"Harbour_At_Dusk.png"}
        assert names("noon") == {"harbour-noon.png"}
        assert names("%") == set()
        assert client.get("/api/v1/images", params={"q": "x" * 256}).status_code == 422
