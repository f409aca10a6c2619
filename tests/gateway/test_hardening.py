"""Hardening against the running stack: revocable sessions, forwarded headers and the login
throttle, what anonymous callers see, deep result pages, slow clients, private files."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.gateway.conftest import JWT_SECRET, files_of, png_bytes
from tests.helpers.procs import REPO, ServiceProcess
from tests.helpers.stack import Stack

pytestmark = pytest.mark.integration

DEEP = "[" * 2000 + "]" * 2000


@pytest.fixture(scope="module")
def private_gateway(stack: Stack) -> Iterator[ServiceProcess]:
    """A second gateway on the same services: search needs a login, the default login
    limits, a 1 s session check, and short connection timeouts."""
    env = {**stack.env,
           "IMGSEARCH_GATEWAY_JWT_SECRET": JWT_SECRET,
           "IMGSEARCH_GATEWAY_PUBLIC_SEARCH": "false",
           "IMGSEARCH_GATEWAY_SESSION_CHECK_TTL_S": "1",
           "IMGSEARCH_GATEWAY_REDIS_PREFIX": stack.env["IMGSEARCH_GATEWAY_REDIS_PREFIX"] + "2:",
           "IMGSEARCH_GATEWAY_TIMEOUT_HEADERS_S": "2",
           "IMGSEARCH_GATEWAY_TIMEOUT_BODY_S": "2",
           "IMGSEARCH_GATEWAY_TIMEOUT_KEEP_ALIVE_S": "2"}
    proc = ServiceProcess("gateway", env, stack.log_dir).start(60)
    yield proc
    proc.stop()


# The limits count in fixed one-minute windows: a window may end during a test's burst, and
# the count starts again. So the tests ask for "limited after at most N", not an exact list.


def _wrong_logins(url: str, names: list[str]) -> list[int]:
    codes = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for i, name in enumerate(names):
            response = client.post("/api/v1/auth/login",
                                   json={"username": name, "password": "wrong-guess-x"},
                                   headers={"X-Forwarded-For": f"203.0.113.{i + 1}"})
            codes.append(response.status_code)
            if response.status_code == 429:
                assert response.headers["Retry-After"]
    return codes


def test_forwarded_for_does_not_rotate_the_client_address(
        private_gateway: ServiceProcess) -> None:
    # 30 logins, each "from" another address, each for another account: the limit per
    # address (10 a minute) still applies, to the real one.
    codes = _wrong_logins(private_gateway.url, [f"nobody-{i}" for i in range(30)])
    assert codes[:10] == [401] * 10
    assert codes.count(429) >= 10 and set(codes) == {401, 429}


def test_forwarded_for_from_a_trusted_proxy_names_the_client(stack: Stack) -> None:
    # Here the test client is the proxy (127.0.0.1 is trusted): each forwarded address is a
    # client of its own, and one address alone is limited.
    env = {**stack.env, "IMGSEARCH_GATEWAY_JWT_SECRET": JWT_SECRET,
           "IMGSEARCH_GATEWAY_TRUSTED_PROXIES": "127.0.0.1",
           "IMGSEARCH_GATEWAY_REDIS_PREFIX": stack.env["IMGSEARCH_GATEWAY_REDIS_PREFIX"] + "3:"}
    proc = ServiceProcess("gateway", env, stack.log_dir).start(60)
    try:
        rotating = _wrong_logins(proc.url, [f"someone-{i}" for i in range(15)])
        assert rotating == [401] * 15
        with httpx.Client(base_url=proc.url, timeout=30) as client:
            one = [client.post("/api/v1/auth/login",
                               json={"username": f"other-{i}", "password": "wrong-guess-x"},
                               headers={"X-Forwarded-For": "198.51.100.7"}).status_code
                   for i in range(25)]
        assert one[:10] == [401] * 10 and one.count(429) >= 5
    finally:
        proc.stop()


def test_wrong_logins_on_one_account_are_throttled(stack: Stack) -> None:
    stack.create_user("victim", "victim-password-9")
    codes = _wrong_logins(stack.url, ["victim"] * 30)
    assert codes[:10] == [401] * 10 and codes.count(429) >= 10
    with stack.client() as client:  # the right password waits for the window too
        while _wrong_logins(stack.url, ["victim"])[-1] != 429:
            pass  # (a new window began: fill it again)
        right = client.post("/api/v1/auth/login",
                            json={"username": "victim", "password": "victim-password-9"})
        assert right.status_code == 429


def _status(url: str, token: str, path: str = "/api/v1/admin/stats") -> tuple[int, str]:
    response = httpx.get(url + path, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    code = response.json().get("error", {}).get("code", "") if response.status_code >= 400 \
        else ""
    return response.status_code, code


def test_demoting_changing_password_or_deleting_revokes_tokens(stack: Stack) -> None:
    stack.create_user("boss2", "boss2-password-x", "admin")
    token = stack.login("boss2", "boss2-password-x")
    assert _status(stack.url, token) == (200, "")
    with stack.admin_client() as admin:
        demoted = admin.patch("/api/v1/admin/users/boss2", json={"role": "viewer"})
        assert demoted.status_code == 200 and demoted.json()["role"] == "viewer"
        assert _status(stack.url, token) == (401, "token_revoked")
        assert _status(stack.url, token, "/api/v1/me") == (401, "token_revoked")
        # The old admin token cannot make a new admin.
        made = httpx.post(stack.url + "/api/v1/admin/users", timeout=30,
                          headers={"Authorization": f"Bearer {token}"},
                          json={"username": "sneaky", "password": "sneaky-password-1",
                                "role": "admin"})
        assert made.status_code == 401
        viewer = stack.login("boss2", "boss2-password-x")
        assert _status(stack.url, viewer) == (403, "admin_required")
        assert _status(stack.url, viewer, "/api/v1/me") == (200, "")
        changed = admin.patch("/api/v1/admin/users/boss2", json={"password": "new-pass-word-7"})
        assert changed.status_code == 200
        assert _status(stack.url, viewer, "/api/v1/me") == (401, "token_revoked")
        fresh = stack.login("boss2", "new-pass-word-7")
        assert admin.delete("/api/v1/admin/users/boss2").status_code == 204
        assert _status(stack.url, fresh, "/api/v1/me") == (401, "token_revoked")
        gone = httpx.post(stack.url + "/api/v1/auth/login", timeout=30,
                          json={"username": "boss2", "password": "new-pass-word-7"})
        assert gone.status_code == 401
        listed = {u["username"] for u in admin.get("/api/v1/admin/users").json()["users"]}
        assert "boss2" not in listed and stack.admin_username in listed


def _cli(stack: Stack, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.env}
    return subprocess.run([sys.executable, "-m", "imgsearch.cli", "users", *args], cwd=REPO,
                          env=env, input=stdin, text=True, capture_output=True, timeout=120)


def test_cli_changes_revoke_tokens(stack: Stack, private_gateway: ServiceProcess) -> None:
    stack.create_user("clerk", "clerk-password-1")
    token = stack.login("clerk", "clerk-password-1")
    assert _status(private_gateway.url, token, "/api/v1/me") == (200, "")
    result = _cli(stack, "role", "clerk", "admin")
    assert result.returncode == 0, result.stderr
    time.sleep(1.5)  # the private gateway checks sessions at most 1 s old
    assert _status(private_gateway.url, token, "/api/v1/me") == (401, "token_revoked")
    weak = _cli(stack, "passwd", "clerk", "--password-stdin", stdin="password1\n")
    assert weak.returncode != 0 and "weak_password" in weak.stderr
    assert _cli(stack, "passwd", "clerk", "--password-stdin",
                stdin="clerk-password-2\n").returncode == 0
    token = stack.login("clerk", "clerk-password-2")
    assert _status(private_gateway.url, token) == (200, "")
    assert _cli(stack, "delete", "clerk", "--yes").returncode == 0
    time.sleep(1.5)
    assert _status(private_gateway.url, token) == (401, "token_revoked")


def test_common_admin_passwords_are_refused(stack: Stack) -> None:
    with stack.admin_client() as admin:
        response = admin.post("/api/v1/admin/users", json={
            "username": "lazy", "password": "qwertyuiop", "role": "admin"})
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "weak_password"


@pytest.fixture(scope="module")
def indexed_image(stack: Stack) -> int:
    with stack.admin_client() as admin:
        response = admin.post("/api/v1/admin/images", files=files_of([png_bytes(9191)], "hx"))
        assert response.status_code == 202, response.text
        assert stack.wait_job(admin, response.json()["job_id"])["status"] == "succeeded"
        return int(response.json()["images"][0]["id"])


def test_anonymous_callers_see_no_uploader_hash_or_storage_key(stack: Stack,
                                                              indexed_image: int) -> None:
    hidden = {"uploader", "sha256", "storage_key", "thumbnail_key"}
    with stack.client() as anonymous:
        one = anonymous.get(f"/api/v1/images/{indexed_image}").json()
        assert one["id"] == indexed_image and not hidden & set(one)
        listed = anonymous.get("/api/v1/images").json()["images"]
        assert listed and not any(hidden & set(image) for image in listed)
    with stack.admin_client() as admin:
        full = admin.get(f"/api/v1/images/{indexed_image}").json()
        assert hidden - {"thumbnail_key"} <= set(full)


def test_originals_are_served_inline_never_sniffed(stack: Stack, indexed_image: int) -> None:
    with stack.client() as anonymous:
        response = anonymous.get(f"/api/v1/images/{indexed_image}/file")
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-disposition"] == "inline; filename*=UTF-8''hx-0.png"
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "sandbox" in csp


@pytest.mark.parametrize("offset", [0, 648, 999, 1000, 5000, 10000])
def test_every_documented_offset_answers(stack: Stack, indexed_image: int,
                                         offset: int) -> None:
    with stack.client() as client:
        response = client.post("/api/v1/search", json={"image_id": indexed_image, "k": 200,
                                                        "offset": offset})
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["offset"] == offset
        assert bool(page["results"]) == (offset == 0)


def test_hostile_json_and_paths_are_4xx(stack: Stack) -> None:
    with stack.client() as client:
        for path in ("/api/v1/auth/login", "/api/v1/search"):
            response = client.post(path, content=DEEP.encode(),
                                   headers={"content-type": "application/json"})
            assert response.status_code == 422, (path, response.text)
        assert client.get("/index.html%00.jpg").status_code == 404


def test_metrics_are_not_public_when_search_is_not(stack: Stack,
                                                   private_gateway: ServiceProcess) -> None:
    assert httpx.get(private_gateway.url + "/metrics").status_code == 401
    admin = httpx.get(private_gateway.url + "/metrics",
                      headers={"Authorization": f"Bearer {stack.admin_token()}"})
    assert admin.status_code == 200 and "http_requests_total" in admin.text


def test_data_files_are_private(stack: Stack, indexed_image: int) -> None:
    images = stack.data_dir / "images"
    assert stat.S_IMODE(stack.data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(images.stat().st_mode) == 0o700
    files = [p for p in images.rglob("*") if p.is_file()]
    assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)


def _closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> float:
    """Seconds until the server closes `sock` (sending `trickle` a byte at a time meanwhile)."""
    start = time.monotonic()
    sock.settimeout(0.25)
    pending = list(trickle)
    while time.monotonic() - start < seconds:
        if pending:
            try:
                sock.send(bytes([pending.pop(0)]))
            except OSError:
                return time.monotonic() - start
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - start
    raise AssertionError(f"the connection was still open after {seconds} s")


def test_slow_clients_are_dropped_while_others_are_served(
        private_gateway: ServiceProcess) -> None:
    port = private_gateway.port
    idle = socket.create_connection(("127.0.0.1", port))
    partial = socket.create_connection(("127.0.0.1", port))
    stalled = socket.create_connection(("127.0.0.1", port))
    try:
        stalled.sendall(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
                        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"5\r\n{\"use\r\n")
        # A byte every 0.25 s: never idle, never complete (slowloris).
        headers = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 200
        served = httpx.get(private_gateway.url + "/healthz", timeout=5)
        assert served.status_code == 200
        assert _closed_within(partial, 8, trickle=headers) < 6
        assert _closed_within(stalled, 8) < 6
        assert _closed_within(idle, 8) < 6
        assert httpx.get(private_gateway.url + "/healthz", timeout=5).status_code == 200
    finally:
        for sock in (idle, partial, stalled):
            sock.close()


def test_server_settings_reach_uvicorn() -> None:
    from gateway.config import GatewaySettings
    from services.common.server import uvicorn_options

    options = uvicorn_options(GatewaySettings(trusted_proxies=["10.0.0.0/8"],
                                              max_connections=7))
    assert options["proxy_headers"] is True and options["forwarded_allow_ips"] == ["10.0.0.0/8"]
    assert options["limit_concurrency"] == 7
    assert uvicorn_options(GatewaySettings(trusted_proxies=[]))["proxy_headers"] is False




def test_uploading_a_stuck_pending_image_again_redrives_it(stack: Stack) -> None:
    import hashlib

    from services.common.storage import image_key

    blob = png_bytes(5150)
    sha = hashlib.sha256(blob).hexdigest()
    # A row whose ingest message was lost (a worker killed with it in hand): pending, and
    # no task anywhere will ever pick it up.
    with stack.internal("catalog") as catalog:
        row = catalog.post("/v1/images", json={
            "sha256": sha, "original_filename": "stuck.png", "storage_key":
            image_key(sha, "png"), "mime": "image/png", "width": 96, "height": 80,
            "bytes": len(blob), "uploader": stack.admin_username}).json()["image"]
        assert row["status"] == "pending"
    with stack.admin_client() as admin:
        response = admin.post("/api/v1/admin/images", files=files_of([blob], "stuck"))
        assert response.status_code == 202, response.text
        image = response.json()["images"][0]
        assert (image["id"], image["duplicate"]) == (row["id"], True)
        assert stack.wait_job(admin, response.json()["job_id"])["status"] == "succeeded"
        assert admin.get(f"/api/v1/images/{row['id']}").json()["status"] == "indexed"
