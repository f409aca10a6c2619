"""The MobileSAM weights file: where it lives, downloading it, checking its SHA-256.

The publisher gives no digest, so the first download records one in a sidecar
(`mobile_sam.pt.sha256`) and every later start checks the file against it; a digest pinned in
the settings is checked as well. Downloads resume a partial `.part` file with an HTTP Range
request and retry transient failures. No torch here: the CLI uses this module.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential
from tqdm import tqdm

from services.common.settings import CommonSettings
from services.common.storage import exclusive_lock
from services.segmentation.config import SegmentationSettings
from services.segmentation.predictor.errors import WeightsChecksumMismatch, WeightsUnavailable

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_RANGE_TOTAL = re.compile(r"bytes \*/(\d+)")


@dataclass(frozen=True)
class WeightsFile:
    path: Path
    sha256: str


class _Transient(Exception):
    """A failure worth another attempt (connection lost, 5xx, short read)."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def verify_weights(path: Path, *, pinned: str = "", record: bool = True) -> str:
    """SHA-256 of `path`, checked against `pinned` and the sidecar (written when absent)."""
    digest = sha256_file(path)
    if pinned and digest != pinned.strip().lower():
        raise WeightsChecksumMismatch(
            f"{path} has SHA-256 {digest}, the pinned digest is {pinned}: delete the file to "
            "download it again, or give the right file",
            detail={"path": str(path), "sha256": digest, "expected": pinned},
        )
    side = sidecar_path(path)
    if side.is_file():
        recorded = side.read_text().split()[0].lower() if side.read_text().strip() else ""
        if recorded and recorded != digest:
            raise WeightsChecksumMismatch(
                f"{path} has SHA-256 {digest} but {recorded} was recorded when it was "
                f"downloaded ({side}): the file changed or is corrupt; delete both files to "
                "download it again",
                detail={"path": str(path), "sha256": digest, "expected": recorded},
            )
    elif record:
        try:
            side.write_text(f"{digest}  {path.name}\n")
        except OSError as exc:  # a read-only folder: the file is still usable
            logger.warning("cannot record the weights digest in %s: %s", side, exc)
    return digest


def _fetch_into(url: str, part: Path, *, timeout: float, progress: bool | None) -> None:
    """One attempt: append the rest of `url` to `part` (or start over when Range is refused)."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with httpx.stream("GET", url, headers=headers, timeout=timeout,
                          follow_redirects=True) as response:
            status = response.status_code
            if status == 416:
                # The partial file may already hold everything.
                match = _RANGE_TOTAL.match(response.headers.get("content-range", ""))
                if match and int(match.group(1)) == have:
                    return
                part.unlink(missing_ok=True)
                raise _Transient("the server refused the resume range; starting over")
            if status == 429 or status >= 500:
                raise _Transient(f"HTTP {status} from {url}")
            if status not in (200, 206):
                raise WeightsUnavailable(f"HTTP {status} from {url}",
                                         detail={"url": url, "status": status})
            mode = "wb"
            if status == 206:
                match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
                if not match or int(match.group(1)) != have:
                    part.unlink(missing_ok=True)
                    raise _Transient("the server answered another range; starting over")
                mode = "ab"
            else:
                have = 0
            length = response.headers.get("content-length")
            total = have + int(length) if length and length.isdigit() else None
            with part.open(mode) as handle, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                desc=part.name.removesuffix(".part"), disable=None if progress is None
                else not progress,
            ) as bar:
                for chunk in response.iter_bytes(1 << 16):
                    handle.write(chunk)
                    bar.update(len(chunk))
                handle.flush()
                os.fsync(handle.fileno())
            if total is not None and part.stat().st_size != total:
                raise _Transient(f"short read: {part.stat().st_size} of {total} bytes")
    except httpx.HTTPError as exc:
        raise _Transient(f"{type(exc).__name__}: {exc}") from exc


def download_weights(
    url: str,
    dest: Path,
    *,
    pinned: str = "",
    timeout: float = 60.0,
    attempts: int = 5,
    progress: bool | None = None,
    backoff_max: float = 8.0,
) -> WeightsFile:
    """Download `url` to `dest` (resuming `dest.part`), check and record its SHA-256.

    `progress`: True/False forces the progress bar on/off; None shows it on a terminal only.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    logger.info("downloading %s to %s", url, dest)
    for attempt in Retrying(
        retry=retry_if_exception_type(_Transient),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.5, max=backoff_max),
        reraise=True,
    ):
        with attempt:
            _fetch_into(url, part, timeout=timeout, progress=progress)
    sidecar_path(dest).unlink(missing_ok=True)
    try:
        digest = verify_weights(part, pinned=pinned, record=False)
    except WeightsChecksumMismatch:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    sidecar_path(dest).write_text(f"{digest}  {dest.name}\n")
    logger.info("downloaded %s (sha256 %s)", dest, digest)
    return WeightsFile(dest, digest)


def _what_to_do(settings: SegmentationSettings, path: Path) -> str:
    return (
        f"Download {settings.weights_url} and put it at {path} (or run "
        "`imgsearch segmentation download`), or point IMGSEARCH_SEGMENTATION_WEIGHTS at a "
        "mobile_sam.pt file. For tests and offline demos only: IMGSEARCH_RANDOM_WEIGHTS=1 "
        "uses randomly initialised weights (masks are then meaningless)."
    )


def find_weights(settings: SegmentationSettings, common: CommonSettings) -> Path | None:
    """The weights file when it is there; an explicitly configured missing file is an error."""
    path = settings.weights_path(common)
    if path.is_file():
        return path
    if not settings.is_default_weights_path():
        raise WeightsUnavailable(
            f"the configured MobileSAM weights {path} do not exist. " + _what_to_do(settings,
                                                                                     path),
            detail={"path": str(path)},
        )
    return None


def ensure_weights(
    settings: SegmentationSettings, common: CommonSettings, *, progress: bool | None = None
) -> WeightsFile:
    """The checked weights file, downloaded first when missing and allowed."""
    path = find_weights(settings, common)
    if path is not None:
        digest = verify_weights(path, pinned=settings.weights_sha256,
                                record=settings.is_default_weights_path())
        return WeightsFile(path, digest)
    path = settings.weights_path(common)
    if not settings.download:
        raise WeightsUnavailable(
            f"no MobileSAM weights at {path} and downloading is off. "
            + _what_to_do(settings, path), detail={"path": str(path)})
    try:
        with exclusive_lock(path):
            if path.is_file():  # another process finished the download meanwhile
                return WeightsFile(path, verify_weights(path, pinned=settings.weights_sha256))
            return download_weights(
                settings.weights_url, path, pinned=settings.weights_sha256,
                timeout=settings.download_timeout_s, attempts=settings.download_attempts,
                progress=progress,
            )
    except (_Transient, OSError) as exc:
        raise WeightsUnavailable(
            f"no MobileSAM weights at {path} and the download failed ({exc}). "
            + _what_to_do(settings, path),
            detail={"path": str(path), "url": settings.weights_url},
        ) from exc
    except WeightsUnavailable as exc:
        raise WeightsUnavailable(
            f"no MobileSAM weights at {path} and the download failed ({exc.message}). "
            + _what_to_do(settings, path),
            detail={"path": str(path), "url": settings.weights_url},
        ) from exc
