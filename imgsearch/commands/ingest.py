"""`imgsearch ingest DIR`: upload a folder of images through the gateway and follow the
indexing (the original build_gallery.py; `--reset-db` empties the gallery first).

Any number of files in constant memory: the folder is walked lazily in a fixed order (by path,
one directory listed at a time), files are read a request at a time (`--batch`), and at most
`--window` upload jobs are in flight: once the window is full, the oldest job is waited for and
only its counts are kept. Uploads take the same path as bulk ingest on the server (each file
checked, stored and registered by `services.common.gallery`; ingest tasks of
`workers.ingest_batch` images, embedded together).

Resuming: after each accepted request the position in the walk (the last path sent), the
counts and the jobs in flight are written to a state file under the data directory, keyed by
gateway URL and folder. Run the same command again after an interruption and it continues
after that path (a file re-sent is a duplicate, never a second image); `--restart` starts
from the beginning. The state file is removed when the run completes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click

from imgsearch.commands._api import Api, api_options, raise_for
from imgsearch.commands._words import counted
from services.common.vocabulary import GONE, IMAGE_SUFFIXES, JOB_FINISHED

Parts = tuple[str, ...]


def walk(root: Path, after: Parts = ()) -> Iterator[tuple[Parts, Path]]:
    """Image files under `root` (hidden ones and symlinked folders left out), in the order of
    their path parts, each with its parts; with `after`, only the files that come after it
    (folders wholly before it are not even listed)."""

    def visit(folder: Path, parts: Parts) -> Iterator[tuple[Parts, Path]]:
        try:
            with os.scandir(folder) as scan:
                entries = sorted((e for e in scan if not e.name.startswith(".")),
                                 key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            path = (*parts, entry.name)
            if entry.is_dir(follow_symlinks=False):
                if after and path < after[:len(path)]:
                    continue  # everything in it comes before `after`
                yield from visit(Path(entry.path), path)
            elif (Path(entry.name).suffix.lower() in IMAGE_SUFFIXES and entry.is_file()
                  and (not after or path > after)):
                yield path, Path(entry.path)

    yield from visit(root, ())


def image_files(folder: Path) -> list[Path]:
    """Every image file under `folder`, in walk order (for small folders: it is a list)."""
    return [path for _, path in walk(folder)]


@dataclass
class State:
    """Progress of one `ingest` run, saved after every accepted request."""

    url: str
    folder: str
    cursor: list[str] = field(default_factory=list)
    sent: int = 0
    new: int = 0
    duplicates: int = 0
    rejected: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    jobs: list[int] = field(default_factory=list)  # in flight, oldest first


def state_path(url: str, folder: Path) -> Path:
    from services.common.settings import common_settings

    key = hashlib.sha256(f"{url.rstrip('/')}\n{folder.resolve()}".encode()).hexdigest()[:16]
    return common_settings().data_dir / "ingest" / f"{key}.json"


def load_state(path: Path, url: str, folder: Path) -> State | None:
    try:
        raw = json.loads(path.read_text())
        state = State(**raw)
    except (OSError, ValueError, TypeError):
        return None
    return state if state.folder == str(folder.resolve()) else None


def save_state(path: Path, state: State) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state)))
    os.replace(tmp, path)


class Ingestion:
    """Uploads the files of one walk, a request at a time, with a bounded window of jobs."""

    def __init__(self, api: Api, state: State, state_file: Path | None, *, tags: str,
                 policy: str, batch: int, window: int, wait: bool) -> None:
        self.api = api
        self.state = state
        self.state_file = state_file
        self.tags = tags
        self.policy = policy
        self.batch = batch
        self.window = window
        self.wait = wait
        self.jobs: deque[int] = deque(state.jobs)
        self.rejections: list[str] = []  # the first 50, for the report
        self.failures: list[str] = []  # the first 20

    def run(self, files: Iterator[tuple[Parts, Path]], progress: Any = None) -> None:
        chunk: list[tuple[Parts, Path]] = []
        for item in files:
            chunk.append(item)
            if len(chunk) >= self.batch:
                self.send(chunk, progress)
                chunk = []
        if chunk:
            self.send(chunk, progress)
        while self.wait and self.jobs:
            self.settle_oldest(progress)

    def send(self, chunk: list[tuple[Parts, Path]], progress: Any) -> None:
        multipart = []
        for parts, path in chunk:
            try:
                multipart.append(("file", (parts[-1], path.read_bytes())))
            except OSError as exc:
                self.reject(parts[-1], "unreadable", str(exc))
        if multipart:
            response = self.api.http.post("/admin/images", files=multipart, data={
                "tags": self.tags, "on_near_duplicate": self.policy})
            if response.status_code == 202:
                body = response.json()
                self.jobs.append(int(body["job_id"]))
                new = sum(not img["duplicate"] for img in body["images"])
                self.state.new += new
                self.state.duplicates += len(body["images"]) - new
                for item in body["rejected"]:
                    self.reject(item["filename"], item["code"], item["message"])
            elif 400 <= response.status_code < 500 and response.status_code not in (401, 403):
                # Every file of the request was refused: the error lists them.
                detail = response.json()["error"].get("detail") or {}
                for item in detail.get("rejected", []):
                    self.reject(item["filename"], item["code"], item["message"])
            else:
                raise_for(response)
        self.state.sent += len(chunk)
        self.state.cursor = list(chunk[-1][0])
        self.state.jobs = list(self.jobs)
        self.save()
        if progress is not None:
            progress.sent(self.state)
        while self.wait and len(self.jobs) > self.window:
            self.settle_oldest(progress)

    def reject(self, filename: str, code: str, message: str) -> None:
        self.state.rejected += 1
        if len(self.rejections) < 50:
            self.rejections.append(f"{filename}: {code} {message}")

    def settle_oldest(self, progress: Any, poll_s: float = 0.5) -> None:
        """Wait for the oldest job in flight to end; keep only its counts."""
        job_id = self.jobs[0]
        while True:
            job: dict[str, Any] = self.api.call("GET", f"/jobs/{job_id}")
            if job["status"] in JOB_FINISHED:
                break
            if progress is not None:
                progress.settled(self.state, job)
            time.sleep(poll_s)
        self.jobs.popleft()
        self.state.done += job["done"]
        self.state.failed += job["failed"]
        self.state.skipped += job["skipped"]
        for item in job.get("items_failed", []):
            if len(self.failures) < 20:
                self.failures.append(f"image {item.get('image_id')}: {item.get('error')}")
        self.state.jobs = list(self.jobs)
        self.save()
        if progress is not None:
            progress.settled(self.state, None)

    def save(self) -> None:
        if self.state_file is not None:
            save_state(self.state_file, self.state)


class Bars:
    """Two rich progress bars: files sent, images indexed (or failed, or skipped)."""

    def __init__(self, total: int | None, quiet: bool) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress("[progress.description]{task.description}", BarColumn(),
                                 MofNCompleteColumn(), TaskProgressColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), disable=quiet)
        self.upload = self.progress.add_task("uploading", total=total)
        self.index = self.progress.add_task("indexing", total=None)

    def __enter__(self) -> Bars:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def sent(self, state: State) -> None:
        self.progress.update(self.upload, completed=state.sent)
        self.progress.update(self.index, total=state.new or None)

    def settled(self, state: State, running: dict[str, Any] | None) -> None:
        extra = 0
        if running is not None:
            extra = running["done"] + running["failed"] + running["skipped"]
        self.progress.update(self.index, total=state.new or None,
                             completed=state.done + state.failed + state.skipped + extra)


def reset_gallery(api: Api) -> int:
    """Delete every image through the admin API and wait until they are gone."""
    ids: list[int] = []
    offset = 0
    while True:
        page = api.call("GET", "/images", params={"limit": 500, "offset": offset})
        ids += [img["id"] for img in page["images"]
                if img["status"] not in GONE]
        offset += len(page["images"])
        if not page["images"] or offset >= page["total"]:
            break
    jobs = []
    for start in range(0, len(ids), 1000):
        jobs.append(api.call("POST", "/admin/images/delete",
                             json={"ids": ids[start:start + 1000]})["job_id"])
    follow_all(api, jobs, label="deleting")
    return len(ids)


def follow_all(api: Api, job_ids: list[int], *, label: str, poll_s: float = 0.5,
               quiet: bool = False) -> list[dict[str, Any]]:
    """One progress bar over several jobs; returns their final states."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    if not job_ids:
        return []
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), disable=quiet) as bar:
        task = bar.add_task(label, total=None)
        while True:
            jobs = [api.call("GET", f"/jobs/{job_id}") for job_id in job_ids]
            total = sum(j["total"] for j in jobs)
            settled = sum(j["done"] + j["failed"] + j["skipped"] for j in jobs)
            bar.update(task, total=total or None, completed=settled)
            if all(j["status"] in JOB_FINISHED for j in jobs):
                return jobs
            time.sleep(poll_s)


def upload_files(api: Api, files: list[Path], *, tags: str = "", batch: int = 16,
                 policy: str = "keep", quiet: bool = False,
                 ) -> tuple[list[int], int, int, list[dict[str, Any]]]:
    """Upload `files` in batches without waiting; returns (job ids, new, duplicates,
    rejections as text)."""
    run = Ingestion(api, State(url=api.url, folder=""), None, tags=tags, policy=policy,
                    batch=batch, window=len(files) + 1, wait=False)
    run.run(((path.name,), path) for path in files)
    rejected = [{"filename": text.split(":", 1)[0], "message": text}
                for text in run.rejections]
    return list(run.jobs), run.state.new, run.state.duplicates, rejected


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--tags", default="", help="Tags for every image (a,b).")
@click.option("--reset-db", is_flag=True, help="Delete every image of the gallery first.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before --reset-db.")
@click.option("--batch", type=click.IntRange(1, 1000), default=16, show_default=True,
              help="Files per upload request.")
@click.option("--window", type=click.IntRange(1, 100_000), default=64, show_default=True,
              help="Upload jobs in flight before waiting for the oldest.")
@click.option("--restart", is_flag=True, help="Start from the beginning, not where an "
                                              "interrupted run stopped.")
@click.option("--skip-near-duplicates", is_flag=True,
              help="Skip images nearly identical to one already in the gallery.")
@click.option("--no-wait", is_flag=True, help="Upload and return without following the jobs.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@api_options
def ingest(folder: Path, tags: str, reset_db: bool, yes: bool, batch: int, window: int,
           restart: bool, skip_near_duplicates: bool, no_wait: bool, quiet: bool, url: str,
           username: str | None) -> None:
    """Upload every image under FOLDER and index it (resumes an interrupted run)."""
    api = Api(url, username)
    try:
        api.login()
        if reset_db:
            if not yes:
                click.confirm("--reset-db deletes EVERY image of the gallery (files, rows, "
                              "vectors). Continue?", abort=True)
            removed = reset_gallery(api)
            click.echo(f"deleted {counted(removed, 'image')}")
        path = state_path(url, folder)
        state = None if restart or reset_db else load_state(path, url, folder)
        if state is not None:
            click.echo(f"resuming after {'/'.join(state.cursor)} "
                       f"({counted(state.sent, 'file')} sent, "
                       f"{counted(len(state.jobs), 'job')} in flight)")
        else:
            state = State(url=url, folder=str(folder.resolve()))
        total = sum(1 for _ in walk(folder))  # a count only: constant memory
        if not total:
            click.echo(f"no images under {folder}")
            path.unlink(missing_ok=True)
            return
        policy = "skip" if skip_near_duplicates else "keep"
        run = Ingestion(api, state, path, tags=tags, policy=policy, batch=batch, window=window,
                        wait=not no_wait)
        with Bars(total, quiet) as bars:
            bars.sent(state)
            run.run(walk(folder, tuple(state.cursor)), bars)
        click.echo(f"{state.new} new, {state.duplicates} already in the gallery, "
                   f"{state.rejected} rejected")
        for line in run.rejections:
            click.echo(f"  rejected {line}", err=True)
        path.unlink(missing_ok=True)
        if no_wait:
            click.echo(f"jobs: {', '.join(map(str, run.jobs))}")
            return
        click.echo(f"indexed {state.done}, failed {state.failed}")
        for line in run.failures:
            click.echo(f"  {line}", err=True)
        if state.failed:
            raise SystemExit(1)
    finally:
        api.close()
