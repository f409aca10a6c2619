"""`imgsearch ingest DIR`: upload a folder of images through the gateway and follow the
indexing (the original build_gallery.py; `--reset-db` empties the gallery first)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from imgsearch.commands._api import TERMINAL, Api, api_options, raise_for

EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS
                  and not p.name.startswith("."))


def reset_gallery(api: Api) -> int:
    """Delete every image through the admin API and wait until they are gone."""
    ids: list[int] = []
    offset = 0
    while True:
        page = api.call("GET", "/images", params={"limit": 500, "offset": offset})
        ids += [img["id"] for img in page["images"]
                if img["status"] not in ("deleting", "removed")]
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
            if all(j["status"] in TERMINAL for j in jobs):
                return jobs
            time.sleep(poll_s)


def upload_files(api: Api, files: list[Path], *, tags: str = "", batch: int = 16,
                 policy: str = "keep", quiet: bool = False,
                 ) -> tuple[list[int], int, int, list[dict[str, Any]]]:
    """Upload `files` in batches; returns (job ids, new, duplicates, rejected files)."""
    from rich.progress import Progress

    job_ids: list[int] = []
    new = duplicates = 0
    rejected: list[dict[str, Any]] = []
    with Progress(disable=quiet) as bar:
        task = bar.add_task("uploading", total=len(files))
        for start in range(0, len(files), batch):
            chunk = files[start:start + batch]
            multipart = [("file", (p.name, p.read_bytes())) for p in chunk]
            response = api.http.post("/admin/images", files=multipart,
                                     data={"tags": tags, "on_near_duplicate": policy})
            if response.status_code == 202:
                body = response.json()
                job_ids.append(body["job_id"])
                new += sum(not img["duplicate"] for img in body["images"])
                duplicates += sum(img["duplicate"] for img in body["images"])
                rejected += body["rejected"]
            elif 400 <= response.status_code < 500 and response.status_code not in (401, 403):
                # Every file of the batch was refused: the error lists them.
                rejected += (response.json()["error"].get("detail") or {}).get("rejected", [])
            else:
                raise_for(response)
            bar.advance(task, len(chunk))
    return job_ids, new, duplicates, rejected


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--tags", default="", help="Tags for every image (a,b).")
@click.option("--reset-db", is_flag=True, help="Delete every image of the gallery first.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before --reset-db.")
@click.option("--batch", type=click.IntRange(1, 1000), default=16, show_default=True,
              help="Files per upload request.")
@click.option("--skip-near-duplicates", is_flag=True,
              help="Skip images nearly identical to one already in the gallery.")
@click.option("--no-wait", is_flag=True, help="Upload and return without following the jobs.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@api_options
def ingest(folder: Path, tags: str, reset_db: bool, yes: bool, batch: int,
           skip_near_duplicates: bool, no_wait: bool, quiet: bool, url: str,
           username: str | None) -> None:
    """Upload every image under FOLDER and index it."""
    files = image_files(folder)
    api = Api(url, username)
    try:
        api.login()
        if reset_db:
            if not yes:
                click.confirm("--reset-db deletes EVERY image of the gallery (files, rows, "
                              "vectors). Continue?", abort=True)
            removed = reset_gallery(api)
            click.echo(f"deleted {removed} images")
        if not files:
            click.echo(f"no images under {folder}")
            return
        policy = "skip" if skip_near_duplicates else "keep"
        job_ids, new, duplicates, rejected = upload_files(api, files, tags=tags, batch=batch,
                                                          policy=policy, quiet=quiet)
        click.echo(f"{new} new, {duplicates} already in the gallery, {len(rejected)} rejected")
        for item in rejected[:50]:
            click.echo(f"  rejected {item['filename']}: {item['code']} {item['message']}",
                       err=True)
        if no_wait:
            click.echo(f"jobs: {', '.join(map(str, job_ids))}")
            return
        jobs = follow_all(api, job_ids, label="indexing", quiet=quiet)
        failed = sum(j["failed"] for j in jobs)
        done = sum(j["done"] for j in jobs)
        click.echo(f"indexed {done}, failed {failed}")
        for job in jobs:
            for item in job.get("items_failed", [])[:20]:
                click.echo(f"  image {item['image_id']}: {item['error']}", err=True)
        if failed:
            raise SystemExit(1)
    finally:
        api.close()
