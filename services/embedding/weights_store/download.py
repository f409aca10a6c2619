"""Downloading a weights file: resumable (HTTP Range into `<file>.part`), retried, verified.

The SHA-256 is checked against a pinned digest when the caller gives one, else against the
`<file>.sha256` sidecar recorded by the first download (publishers such as Meta give no
digests, so none is invented). A file whose digest does not match never takes the final name.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)
from tqdm import tqdm

from services.common.errors import DomainError
from services.embedding.weights_store.locate import file_sha256, read_sidecar, write_sidecar

logger = logging.getLogger(__name__)

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


class DownloadError(DomainError):
    code = "download_failed"
    status = 502


class _Transient(Exception):
    """A failure worth another attempt (connection refused or cut, 5xx, short body)."""

    def __init__(self, message: str, *, offline: bool = False) -> None:
        super().__init__(message)
        self.offline = offline


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    sha256: str
    size: int
    downloaded: bool  # False: the file was already there and matched
    recorded: bool  # True: this run wrote the `.sha256` sidecar


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


class _Fetcher:
    """One download's state across attempts: the `.part` file and the progress bar."""

    def __init__(self, url: str, part: Path, client: httpx.Client, progress: bool) -> None:
        self.url = url
        self.part = part
        self.client = client
        self.progress = progress
        self.bar: tqdm | None = None

    def _bar(self, total: int | None, initial: int) -> tqdm:
        if self.bar is None:
            self.bar = tqdm(total=total, initial=initial, unit="B", unit_scale=True,
                            unit_divisor=1024, desc=self.part.name.removesuffix(".part"),
                            disable=not self.progress, dynamic_ncols=True)
        else:
            self.bar.reset(total=total)
            self.bar.update(initial)
        return self.bar

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def attempt(self) -> None:
        """Fetch what is missing of the file; `_Transient` when it must be tried again."""
        offset = self.part.stat().st_size if self.part.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            with self.client.stream("GET", self.url, headers=headers) as response:
                total = self._accept(response, offset)
                if response.status_code == 416:
                    return  # nothing left to fetch
                offset = self.part.stat().st_size if self.part.exists() else 0
                bar = self._bar(total, offset)
                with self.part.open("ab") as handle:
                    for block in response.iter_bytes():
                        handle.write(block)
                        bar.update(len(block))
                    handle.flush()
                    os.fsync(handle.fileno())
        except httpx.ConnectError as exc:
            raise _Transient(f"cannot connect: {exc}", offline=True) from exc
        except httpx.TransportError as exc:
            raise _Transient(f"connection lost: {exc}") from exc
        size = self.part.stat().st_size
        if total is not None and size != total:
            raise _Transient(f"got {size} of {total} bytes")

    def _accept(self, response: httpx.Response, offset: int) -> int | None:
        """Check the status, align the `.part` file with it; the full size when known."""
        status = response.status_code
        if status == 200:
            if offset:  # the server ignored the Range header: start over
                self.part.unlink(missing_ok=True)
            length = response.headers.get("content-length")
            return int(length) if length and length.isdigit() else None
        if status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
            if match is None or int(match.group(1)) != offset:
                self.part.unlink(missing_ok=True)
                raise _Transient("the server answered another range than asked")
            return None if match.group(3) == "*" else int(match.group(3))
        if status == 416:
            match = _UNSATISFIED_RANGE.match(response.headers.get("content-range", ""))
            if match is not None and int(match.group(1)) == offset:
                return offset  # the .part file is already complete
            self.part.unlink(missing_ok=True)
            raise _Transient("the partial file does not fit the remote one: starting over")
        if status >= 500 or status == 429:
            raise _Transient(f"the server answered {status}")
        raise DownloadError(f"{self.url} answered HTTP {status}",
                            detail={"url": self.url, "status": status})


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    logger.warning("download attempt %d failed: %s; retrying", state.attempt_number, error)


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    force: bool = False,
    attempts: int = 5,
    timeout: float = 60.0,
    wait_max: float = 10.0,
    wait_multiplier: float = 0.5,
    progress: bool = True,
) -> DownloadResult:
    """Download `url` to `dest` (resuming `dest.part`), verify its SHA-256, record it."""
    pinned = sha256.lower() if sha256 else None
    expected = pinned or read_sidecar(dest)
    if dest.is_file() and not force:
        actual = file_sha256(dest)
        if expected is not None and actual != expected:
            raise DownloadError(
                f"{dest} exists but its SHA-256 is {actual}, not {expected}; run again with "
                "--force to download it anew",
                code="checksum_mismatch", detail={"expected": expected, "actual": actual},
            )
        recorded = read_sidecar(dest) is None
        if recorded:
            write_sidecar(dest, actual)
        return DownloadResult(dest, actual, dest.stat().st_size, False, recorded)

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    with httpx.Client(timeout=timeout, follow_redirects=True) as client:
        fetcher = _Fetcher(url, part, client, progress)
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(attempts),
                wait=wait_exponential(multiplier=wait_multiplier, max=wait_max),
                retry=retry_if_exception_type(_Transient),
                reraise=True,
                before_sleep=_log_retry,
            ):
                with attempt:
                    fetcher.attempt()
        except _Transient as exc:
            have = part.stat().st_size if part.exists() else 0
            if exc.offline:
                message = (f"cannot reach {url} ({exc}). No network? Download the file on "
                           f"another machine and put it at {dest}, or set "
                           "IMGSEARCH_EMBEDDING_WEIGHTS=/path/to/weights")
            else:
                message = (f"download of {url} failed after {attempts} attempts ({exc}); "
                           f"{have} bytes are kept in {part.name}: run the command again to "
                           "resume")
            raise DownloadError(message, detail={"url": url, "partial_bytes": have}) from exc
        finally:
            fetcher.close()

    actual = file_sha256(part)
    if expected is not None and actual != expected:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"the SHA-256 of the downloaded {dest.name} is {actual}, expected {expected}; "
            "the file was not kept",
            code="checksum_mismatch", detail={"expected": expected, "actual": actual},
        )
    os.replace(part, dest)
    recorded = read_sidecar(dest) != actual
    if recorded:
        write_sidecar(dest, actual)
    logger.info("downloaded %s to %s (sha256 %s)", url, dest, actual)
    return DownloadResult(dest, actual, dest.stat().st_size, True, recorded)
