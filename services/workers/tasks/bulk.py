"""`bulk_ingest(job_id, folder | paths)`: a server-side folder (an admin's) into the gallery.

Every image file is stored content-addressed, gets a catalog row (idempotent by sha256) and a
job item; only then are the ingests enqueued, so the job's total is complete before any item
can finish it. Re-running the task for the same job (a retry, or reconcile re-driving a stalled
job) converges: existing files and rows are found again, indexed rows are counted done.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from services.common import queue
from services.common.images import ImageError, probe_image
from services.common.storage import image_key, resolve, write_atomic
from services.workers.tasks.context import TaskContext
from services.workers.tasks.progress import finish_if_settled, record_item

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})


class BulkSourceError(ValueError):
    """The folder or paths of a bulk ingest are not usable."""


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def image_files(folder: Path | None, paths: list[str] | None) -> Iterator[Path]:
    """Image files to ingest, sorted, each resolved inside `folder` when one is given.

    Symlinks pointing out of the folder are skipped (with a log line), as are non-images by
    suffix; the content is checked again when the file is read.
    """
    root = folder.resolve() if folder is not None else None
    if root is not None and not root.is_dir():
        raise BulkSourceError(f"not a folder: {folder}")
    if paths:
        candidates = [Path(p) if root is None or Path(p).is_absolute() else root / p
                      for p in paths]
    elif root is not None:
        candidates = []
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames.sort()
            candidates.extend(Path(dirpath) / name for name in sorted(filenames))
    else:
        raise BulkSourceError("give a folder or a list of paths")
    for candidate in candidates:
        real = candidate.resolve()
        if root is not None and not _inside(real, root):
            logger.warning("skipping %s: it resolves outside %s", candidate, root)
            continue
        if real.suffix.lower() not in IMAGE_SUFFIXES or not real.is_file():
            continue
        yield real


def store_file(ctx: TaskContext, path: Path, *, tags: list[str] | None,
               uploader: str | None) -> tuple[int, str] | None:
    """Store one file content-addressed and create its row; (image id, status) or None when
    the file is not a usable image."""
    data = path.read_bytes()
    try:
        _, info = probe_image(data, max_bytes=ctx.settings.max_image_bytes,
                              max_pixels=ctx.settings.max_image_pixels)
    except ImageError as exc:
        logger.warning("skipping %s: %s", path.name, exc.message)
        return None
    sha256 = hashlib.sha256(data).hexdigest()
    key = image_key(sha256, info.ext)
    target = resolve(ctx.images_dir, key)
    if not target.is_file():
        write_atomic(target, data)
    body = {"sha256": sha256, "original_filename": path.name[:255], "storage_key": key,
            "mime": info.mime, "width": info.width, "height": info.height, "bytes": len(data),
            "uploader": uploader, "tags": tags or []}
    row, _ = ctx.clients.catalog.create_image(body)
    return int(row["id"]), str(row["status"])


def bulk_ingest(ctx: TaskContext, job_id: int, *, folder: str | None = None,
                paths: list[str] | None = None, tags: list[str] | None = None,
                uploader: str | None = None, on_near_duplicate: str = "keep") -> int:
    """Store, register and enqueue every image of the source; returns the number of images."""
    source = Path(folder) if folder else None
    rows: list[tuple[int, str]] = []
    batch: list[int] = []
    for path in image_files(source, paths):
        stored = store_file(ctx, path, tags=tags, uploader=uploader)
        if stored is None:
            continue
        rows.append(stored)
        batch.append(stored[0])
        if len(batch) >= ctx.settings.page_size:
            ctx.clients.catalog.register_items(job_id, batch)
            ctx.heartbeat(job_id)
            batch = []
    ctx.clients.catalog.register_items(job_id, batch)
    ctx.heartbeat(job_id)
    logger.info("bulk job %s: %d images registered", job_id, len(rows))
    for image_id, status in rows:
        if status == "indexed":
            record_item(ctx, job_id, image_id, "done")
        elif status == "pending":
            ctx.enqueue(queue.INGEST, {"image_id": image_id, "job_id": job_id,
                                       "on_near_duplicate": on_near_duplicate})
        else:
            # failed (a permanent error such as an undecodable file), deleting or removed
            record_item(ctx, job_id, image_id, "failed" if status == "failed" else "skipped",
                        f"image is {status}")
    if not rows:
        ctx.clients.catalog.finish_job(job_id, "succeeded")
        ctx.forget_heartbeat(job_id)
    else:
        finish_if_settled(ctx, job_id)
    return len(rows)
