"""Downloading mobile_sam.pt: progress, resume with Range, retries, SHA-256 sidecar, and the
error that says what to do when there is no file and no network."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from services.common.settings import common_settings
from services.segmentation.config import SegmentationSettings
from services.segmentation.predictor.errors import WeightsChecksumMismatch, WeightsUnavailable
from services.segmentation.predictor.weights import (
    download_weights,
    ensure_weights,
    sidecar_path,
    verify_weights,
)
from tests.helpers.procs import free_port
from tests.segmentation.fileserver import Script, serve_file

PAYLOAD = os.urandom(3 * (1 << 20) + 12345)
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


def test_download_records_the_digest(tmp_path: Path) -> None:
    dest = tmp_path / "models" / "mobile_sam.pt"
    script = Script(PAYLOAD)
    with serve_file(script) as url:
        result = download_weights(url, dest, progress=False)
    assert result.sha256 == DIGEST and dest.read_bytes() == PAYLOAD
    assert sidecar_path(dest).read_text().split()[0] == DIGEST
    assert not dest.with_name("mobile_sam.pt.part").exists()
    assert script.requests == [None]


def test_download_resumes_a_partial_file_with_range(tmp_path: Path) -> None:
    dest = tmp_path / "mobile_sam.pt"
    dest.with_name("mobile_sam.pt.part").write_bytes(PAYLOAD[:1000])
    script = Script(PAYLOAD)
    with serve_file(script) as url:
        result = download_weights(url, dest, progress=False)
    assert result.sha256 == DIGEST
    assert script.requests == ["bytes=1000-"]


def test_download_retries_a_dropped_connection_and_resumes(tmp_path: Path) -> None:
    dest = tmp_path / "mobile_sam.pt"
    script = Script(PAYLOAD, fail_with_503=1, cut_after=500_000)
    with serve_file(script) as url:
        result = download_weights(url, dest, progress=False, attempts=4, backoff_max=0.1)
    assert result.sha256 == DIGEST and dest.read_bytes() == PAYLOAD
    # 503, then a full answer cut short, then the rest from where it stopped
    assert script.requests[:2] == [None, None]
    assert script.requests[2] is not None and script.requests[2].startswith("bytes=")
    assert int(script.requests[2][6:-1]) > 0


def test_download_starts_over_when_range_is_not_supported(tmp_path: Path) -> None:
    dest = tmp_path / "mobile_sam.pt"
    dest.with_name("mobile_sam.pt.part").write_bytes(b"stale bytes")
    with serve_file(Script(PAYLOAD, ranges=False)) as url:
        assert download_weights(url, dest, progress=False).sha256 == DIGEST


def test_pinned_digest_mismatch_keeps_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "mobile_sam.pt"
    with serve_file(Script(PAYLOAD)) as url, pytest.raises(WeightsChecksumMismatch):
        download_weights(url, dest, pinned="0" * 64, progress=False)
    assert not dest.exists() and not dest.with_name("mobile_sam.pt.part").exists()


def test_recorded_digest_is_checked_after(tmp_path: Path) -> None:
    path = tmp_path / "mobile_sam.pt"
    path.write_bytes(PAYLOAD)
    assert verify_weights(path) == DIGEST  # records
    assert verify_weights(path) == DIGEST  # checks
    path.write_bytes(PAYLOAD[:-1] + b"x")
    with pytest.raises(WeightsChecksumMismatch) as info:
        verify_weights(path)
    assert info.value.code == "weights_checksum_mismatch"


def test_ensure_weights_downloads_into_the_models_folder(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with serve_file(Script(PAYLOAD)) as url:
        monkeypatch.setenv("IMGSEARCH_SEGMENTATION_WEIGHTS_URL", url)
        common = common_settings()
        first = ensure_weights(SegmentationSettings(), common, progress=False)
    assert first.path == common.models_dir / "mobile_sam.pt"
    # Found and checked the second time, without the server.
    assert ensure_weights(SegmentationSettings(), common).sha256 == DIGEST


def test_offline_without_weights_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSEARCH_SEGMENTATION_WEIGHTS_URL",
                       f"http://127.0.0.1:{free_port()}/mobile_sam.pt")
    monkeypatch.setenv("IMGSEARCH_SEGMENTATION_DOWNLOAD_ATTEMPTS", "2")
    with pytest.raises(WeightsUnavailable) as info:
        ensure_weights(SegmentationSettings(), common_settings(), progress=False)
    message = info.value.message
    assert info.value.code == "weights_unavailable"
    assert "imgsearch segmentation download" in message
    assert "IMGSEARCH_SEGMENTATION_WEIGHTS" in message and "IMGSEARCH_RANDOM_WEIGHTS" in message


def test_download_off_or_missing_configured_file_is_an_error(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IMGSEARCH_SEGMENTATION_DOWNLOAD", "false")
    with pytest.raises(WeightsUnavailable) as off:
        ensure_weights(SegmentationSettings(), common_settings())
    assert "downloading is off" in off.value.message
    monkeypatch.setenv("IMGSEARCH_SEGMENTATION_WEIGHTS", str(tmp_path / "nope.pt"))
    with pytest.raises(WeightsUnavailable) as missing:
        ensure_weights(SegmentationSettings(), common_settings())
    assert "nope.pt" in missing.value.message


def test_cli_download_and_check() -> None:
    from click.testing import CliRunner

    from imgsearch.cli import cli

    runner = CliRunner()
    with serve_file(Script(PAYLOAD)) as url:
        first = runner.invoke(cli, ["segmentation", "download", "--url", url, "--no-progress"])
    assert first.exit_code == 0, first.output
    path = common_settings().models_dir / "mobile_sam.pt"
    assert path.read_bytes() == PAYLOAD and DIGEST in first.output
    again = runner.invoke(cli, ["segmentation", "download"])
    assert again.exit_code == 0 and "is there" in again.output
    path.write_bytes(b"corrupt")
    broken = runner.invoke(cli, ["segmentation", "download"])
    assert broken.exit_code == 1 and "recorded" in broken.output
    offline = runner.invoke(cli, ["segmentation", "download", "--force", "--attempts", "1",
                                  "--url", f"http://127.0.0.1:{free_port()}/x.pt"])
    assert offline.exit_code == 1 and "failed" in offline.output


def test_concurrent_starts_download_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    script = Script(PAYLOAD)
    with serve_file(script) as url:
        monkeypatch.setenv("IMGSEARCH_SEGMENTATION_WEIGHTS_URL", url)
        common = common_settings()
        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(
                lambda _: ensure_weights(SegmentationSettings(), common, progress=False),
                range(3)))
    assert {r.sha256 for r in results} == {DIGEST}
    assert len(script.requests) == 1
