"""Auth on admin routes and hostile uploads, against the running stack."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import httpx
import jwt
import pytest
from PIL import Image

from tests.gateway.conftest import JWT_SECRET, count_files, files_of, png_bytes
from tests.helpers.stack import Stack

pytestmark = pytest.mark.integration


def token(secret: str, role: str = "admin", exp_offset: int = 600,
          audience: str = "imgsearch-api") -> str:
    now = int(time.time())
    return jwt.encode({"sub": "admin", "role": role, "iss": "imgsearch", "aud": audience,
                       "iat": now - 1000, "nbf": now - 1000, "exp": now + exp_offset},
                      secret, algorithm="HS256")


ADMIN_ROUTES = [
    ("POST", "/api/v1/admin/reindex"),
    ("POST", "/api/v1/admin/reconcile"),
    ("GET", "/api/v1/admin/stats"),
    ("DELETE", "/api/v1/admin/images/1"),
    ("GET", "/api/v1/jobs/1"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
@pytest.mark.parametrize(("auth", "code"), [
    (None, "not_authenticated"),
    ("Bearer " + "e30.e30.e30", "invalid_token"),
    ("forged", "invalid_token"),
    ("expired", "token_expired"),
    ("Basic YWRtaW46YWRtaW4=", "invalid_token"),
])
def test_admin_routes_refuse_bad_tokens(stack: Stack, method: str, path: str,
                                        auth: str | None, code: str) -> None:
    headers = {}
    if auth == "forged":
        headers["Authorization"] = "Bearer " + token("not-the-secret-" + "y" * 40)
    elif auth == "expired":
        headers["Authorization"] = "Bearer " + token(JWT_SECRET, exp_offset=-10)
    elif auth:
        headers["Authorization"] = auth
    response = httpx.request(method, stack.url + path, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == code


def test_viewer_cannot_upload(stack: Stack) -> None:
    stack.create_user("viewer1", "viewer-password-1", "viewer")
    viewer = stack.login("viewer1", "viewer-password-1")
    with stack.client(viewer) as client:
        assert client.get("/api/v1/me").json() == {"username": "viewer1", "role": "viewer"}
        response = client.post("/api/v1/admin/images", files=files_of([png_bytes(1)]))
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "admin_required"


def test_login_errors(stack: Stack) -> None:
    with stack.client() as client:
        wrong = client.post("/api/v1/auth/login",
                            json={"username": stack.admin_username, "password": "nope-nope"})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "invalid_credentials"
        form = client.post("/api/v1/auth/login", data={"username": stack.admin_username,
                                                        "password": stack.admin_password})
        assert form.status_code == 200 and form.json()["user"]["role"] == "admin"


def bomb() -> bytes:
    out = io.BytesIO()
    Image.new("1", (12000, 12000)).save(out, format="PNG")  # 144 MP, a few KB
    return out.getvalue()


def truncated() -> bytes:
    out = io.BytesIO()
    Image.effect_noise((300, 300), 60).convert("RGB").save(out, format="JPEG")
    return out.getvalue()[:2000]


HOSTILE = [
    ("not-an-image.jpg", b"hello, this is text" * 10, 415, "not_an_image"),
    ("zero.png", b"", 400, "empty_image"),
    ("cut.jpg", truncated(), 400, "truncated_image"),
    ("bomb.png", bomb(), 413, "image_too_large"),
    ("../../etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n", 415, "not_an_image"),
]


def state(stack: Stack) -> tuple[int, int, int]:
    with stack.internal("catalog") as catalog:
        rows = catalog.get("/v1/stats").json()["total"]
        jobs = len(catalog.get("/v1/jobs", params={"limit": 500}).json()["jobs"])
    return rows, jobs, count_files(stack.data_dir / "images")


@pytest.mark.parametrize(("name", "data", "status", "code"), HOSTILE,
                         ids=[h[0] for h in HOSTILE])
def test_hostile_upload_changes_nothing(stack: Stack, name: str, data: bytes, status: int,
                                        code: str) -> None:
    before = state(stack)
    with stack.admin_client() as admin:
        response = admin.post("/api/v1/admin/images", files=[("file", (name, data))])
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
        assert response.json()["error"]["detail"]["rejected"][0]["code"] == code
        # The same bytes as a search query are refused the same way.
        query = admin.post("/api/v1/search", files={"file": (name, data)})
        assert query.status_code == status and query.json()["error"]["code"] == code
    assert state(stack) == before


def test_hostile_filename_of_a_real_image_is_only_metadata(stack: Stack) -> None:
    blob = png_bytes(424242)
    with stack.admin_client() as admin:
        response = admin.post("/api/v1/admin/images",
                              files=[("file", ("../../../../tmp/evil.png", blob))])
        assert response.status_code == 202
        image = response.json()["images"][0]
        assert image["original_filename"] == "evil.png"
        row = admin.get(f"/api/v1/images/{image['id']}").json()
        assert row["storage_key"].endswith(".png") and "/" in row["storage_key"]
        assert ".." not in row["storage_key"]
        assert (stack.data_dir / "images" / row["storage_key"]).read_bytes() == blob
        stack.wait_job(admin, response.json()["job_id"])


def test_oversized_body_is_refused_while_streaming(stack: Stack) -> None:
    before = state(stack)
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        yield (b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; "
               b"filename=\"a.png\"\r\n\r\n")
        for _ in range(4000):  # 4000 x 64 KB = 256 MB, far past the 16 MB request limit
            sent += 65536
            yield b"\0" * 65536

    with stack.admin_client() as admin:
        try:
            response = admin.post("/api/v1/admin/images", content=body(),
                                  headers={"Content-Type": "multipart/form-data; boundary=xyz"})
            assert response.status_code == 413
            assert response.json()["error"]["code"] == "payload_too_large"
        except httpx.HTTPError:
            pass  # the server may close the connection while we still send: also a refusal
        # Declared too large: refused before a byte of the body is read.
        declared = admin.post("/api/v1/admin/images", content=b"x" * 17_000_000,
                              headers={"Content-Type": "multipart/form-data; boundary=xyz"})
        assert declared.status_code == 413
        too_many = admin.post("/api/v1/admin/images",
                              files=files_of([png_bytes(i) for i in range(101)]))
        assert too_many.status_code == 413
        assert too_many.json()["error"]["code"] == "too_many_files"
    assert sent < 256 * 2**20
    assert state(stack) == before
