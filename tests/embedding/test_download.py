"""Weights download against a local HTTP server: progress, resume, checksum, offline."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from imgsearch.cli import cli
from services.embedding.weights_store import DownloadError, download, official_url
from services.embedding.weights_store.download import part_path
from services.embedding.weights_store.locate import (
    ChecksumMismatch,
    read_sidecar,
    sidecar,
    verify_sidecar,
)
from tests.helpers.procs import free_port


class WeightsServer:
    """Serves one generated file at /<name>, honouring Range; can cut connections."""

    def __init__(self, data: bytes, name: str = "dinov2_vits14_pretrain.pth") -> None:
        self.data = data
        self.name = name
        self.cuts = 0  # the next `cuts` responses stop halfway through the body
        self.ranges: list[str | None] = []
        self.ignore_range = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.lstrip("/") != server.name:
                    self.send_error(404)
                    return
                header = self.headers.get("Range")
                server.ranges.append(header)
                start = 0
                match = re.match(r"bytes=(\d+)-$", header or "")
                if match and not server.ignore_range:
                    start = int(match.group(1))
                    if start >= len(server.data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(server.data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(server.data) - 1}/{len(server.data)}")
                else:
                    self.send_response(200)
                body = server.data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if server.cuts > 0:
                    server.cuts -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{self.name}"

    def __enter__(self) -> WeightsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def payload() -> bytes:
    return np.random.default_rng(7).bytes(3 * 1024 * 1024 + 123)


@pytest.fixture
def server(payload: bytes) -> Iterator[WeightsServer]:
    with WeightsServer(payload) as srv:
        yield srv


def _fast(**kwargs: object) -> dict[str, object]:
    return {"wait_multiplier": 0.01, "wait_max": 0.05, "progress": False, **kwargs}


def test_download_writes_file_and_records_digest(server: WeightsServer, payload: bytes,
                                                 tmp_path: Path) -> None:
    dest = tmp_path / "models" / "w.pth"
    result = download(server.url, dest, **_fast())  # type: ignore[arg-type]
    assert dest.read_bytes() == payload
    assert result.sha256 == hashlib.sha256(payload).hexdigest()
    assert result.downloaded and result.recorded
    assert read_sidecar(dest) == result.sha256
    assert not part_path(dest).exists()
    assert verify_sidecar(dest) == result.sha256

    again = download(server.url, dest, **_fast())  # type: ignore[arg-type]
    assert not again.downloaded and not again.recorded
    assert len(server.ranges) == 1  # nothing fetched the second time


def test_download_resumes_after_cut_connection(server: WeightsServer, payload: bytes,
                                               tmp_path: Path) -> None:
    server.cuts = 1
    dest = tmp_path / "w.pth"
    result = download(server.url, dest, **_fast())  # type: ignore[arg-type]
    assert dest.read_bytes() == payload
    assert result.sha256 == hashlib.sha256(payload).hexdigest()
    assert server.ranges[0] is None
    assert server.ranges[1] == f"bytes={len(payload) // 2}-"


def test_partial_file_is_kept_and_resumed_by_a_later_run(server: WeightsServer, payload: bytes,
                                                         tmp_path: Path) -> None:
    server.cuts = 5
    dest = tmp_path / "w.pth"
    with pytest.raises(DownloadError) as info:
        download(server.url, dest, **_fast(attempts=2))  # type: ignore[arg-type]
    assert "resume" in info.value.message
    kept = part_path(dest).stat().st_size
    assert 0 < kept < len(payload)
    assert not dest.exists()
    server.cuts = 0
    download(server.url, dest, **_fast())  # type: ignore[arg-type]
    assert dest.read_bytes() == payload
    assert server.ranges[-1] == f"bytes={kept}-"


def test_server_ignoring_range_restarts_cleanly(server: WeightsServer, payload: bytes,
                                                tmp_path: Path) -> None:
    dest = tmp_path / "w.pth"
    part_path(dest).write_bytes(b"stale partial bytes")
    server.ignore_range = True
    download(server.url, dest, **_fast())  # type: ignore[arg-type]
    assert dest.read_bytes() == payload


def test_complete_part_file_is_finished_without_refetching(server: WeightsServer,
                                                           payload: bytes, tmp_path: Path) -> None:
    dest = tmp_path / "w.pth"
    part_path(dest).write_bytes(payload)
    download(server.url, dest, **_fast())  # type: ignore[arg-type]
    assert dest.read_bytes() == payload
    assert server.ranges == [f"bytes={len(payload)}-"]


def test_pinned_digest_mismatch_keeps_no_file(server: WeightsServer, tmp_path: Path) -> None:
    dest = tmp_path / "w.pth"
    with pytest.raises(DownloadError) as info:
        download(server.url, dest, **_fast(sha256="0" * 64))  # type: ignore[arg-type]
    assert info.value.code == "checksum_mismatch"
    assert not dest.exists() and not part_path(dest).exists()
    assert not sidecar(dest).exists()


def test_recorded_digest_is_checked_on_the_next_download(server: WeightsServer,
                                                         payload: bytes, tmp_path: Path) -> None:
    dest = tmp_path / "w.pth"
    download(server.url, dest, **_fast())  # type: ignore[arg-type]
    dest.unlink()
    server.data = payload[:-1] + bytes([payload[-1] ^ 0xFF])  # the remote file changed
    with pytest.raises(DownloadError) as info:
        download(server.url, dest, **_fast())  # type: ignore[arg-type]
    assert info.value.code == "checksum_mismatch"
    assert not dest.exists()


def test_damaged_file_fails_its_sidecar_check(server: WeightsServer, tmp_path: Path) -> None:
    dest = tmp_path / "w.pth"
    download(server.url, dest, **_fast())  # type: ignore[arg-type]
    with dest.open("r+b") as handle:
        handle.write(b"\x00\x01\x02")
    with pytest.raises(ChecksumMismatch):
        verify_sidecar(dest)
    with pytest.raises(DownloadError) as info:
        download(server.url, dest, **_fast())  # type: ignore[arg-type]
    assert info.value.code == "checksum_mismatch"
    download(server.url, dest, **_fast(force=True))  # type: ignore[arg-type]
    assert verify_sidecar(dest) is not None


def test_http_404_is_not_retried(server: WeightsServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadError) as info:
        download(server.url + ".missing", tmp_path / "w.pth", **_fast())  # type: ignore[arg-type]
    assert "404" in info.value.message


def test_offline_gives_a_clear_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/dinov2_vits14_pretrain.pth"
    with pytest.raises(DownloadError) as info:
        download(url, tmp_path / "w.pth", **_fast(attempts=2))  # type: ignore[arg-type]
    assert "cannot reach" in info.value.message
    assert "IMGSEARCH_EMBEDDING_WEIGHTS" in info.value.message


def test_official_urls() -> None:
    base = "https://dl.fbaipublicfiles.com/dinov2"
    assert official_url("dinov2_vitb14", base) == (
        f"{base}/dinov2_vitb14/dinov2_vitb14_pretrain.pth")
    assert official_url("dinov2_vits14_reg", base) == (
        f"{base}/dinov2_vits14/dinov2_vits14_reg4_pretrain.pth")
    assert official_url("dinov2_vitg14_reg4", base + "/") == (
        f"{base}/dinov2_vitg14/dinov2_vitg14_reg4_pretrain.pth")


def test_cli_download_shows_progress_and_lands_in_models_dir(
        server: WeightsServer, payload: bytes, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    base = server.url.rsplit("/", 1)[0]
    server.name = "dinov2_vits14/dinov2_vits14_pretrain.pth"
    monkeypatch.setenv("IMGSEARCH_EMBEDDING_WEIGHTS_BASE_URL", base)
    result = CliRunner().invoke(cli, ["weights", "download", "dinov2_vits14"])
    assert result.exit_code == 0, result.output
    dest = tmp_path / "data" / "models" / "dinov2_vits14.pth"
    assert dest.read_bytes() == payload
    assert "100%" in result.stderr
    assert hashlib.sha256(payload).hexdigest() in result.stdout
    assert sidecar(dest).exists()


def test_cli_download_offline_exits_non_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}/w.pth"
    result = CliRunner().invoke(cli, ["weights", "download", "dinov2_vits14", "--url", url,
                                      "--attempts", "1"])
    assert result.exit_code == 1
    assert "cannot reach" in result.stderr


def test_cli_download_unknown_model() -> None:
    result = CliRunner().invoke(cli, ["weights", "download", "resnet50"])
    assert result.exit_code == 2
    assert "unknown model" in result.stderr
