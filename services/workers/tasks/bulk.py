"""`bulk_ingest(job_id, folder | paths)`: a server-side folder (an admin's) into the gallery.

Every image file is checked, stored content-addressed and gets a catalog row (idempotent by
sha256; `services.common.gallery`, the same steps as an upload; one catalog request per
`page_size` files) and a job item; only then are
the ingests enqueued, a batch of images per task, so the job's total is complete before any
item can finish it. Re-running the task for the same job (a retry, or reconcile re-driving a stalled
job) converges: existing files and rows are found again, indexed rows are counted done.
"""

from __future__ import annotations

import logging
import os
from array import array
from collections.abc import Iterator
from pathlib import Path

from services.common import queue
from services.common.gallery import (
    ImageBeingDeleted,
    StoredImage,
    check_image,
    register_many,
    store_checked,
)
from services.common.images import ImageError
from services.common.queue import ingest_messages
from services.common.vocabulary import IMAGE_SUFFIXES, ImageStatus, ItemState, JobStatus
from services.workers.tasks.context import TaskContext
from services.workers.tasks.progress import finish_if_settled, record_items

logger = logging.getLogger(__name__)


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
        candidates: Iterator[Path] = (
            Path(p) if root is None or Path(p).is_absolute() else root / p for p in paths)
    elif root is not None:
        candidates = _walk(root)
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


def _walk(root: Path) -> Iterator[Path]:
    """Files under `root`, sorted, one folder listed at a time."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def store_file(ctx: TaskContext, path: Path) -> StoredImage | None:
    """Check one file (a full decode) and store it content-addressed (as an upload does);
    None when it is not a usable image."""
    settings = ctx.settings
    try:
        data = path.read_bytes()
        image = check_image(data, path.name, max_bytes=settings.max_image_bytes,
                            max_pixels=settings.max_image_pixels)
        return store_checked(ctx.images_dir, image)
    except ImageError as exc:
        logger.warning("skipping %s: %s", path.name, exc.message)
    except OSError as exc:
        logger.warning("skipping %s: %s", path.name, exc)
    return None


def register_files(ctx: TaskContext, stored: list[StoredImage], *, tags: list[str] | None,
                   uploader: str | None) -> list[tuple[int, str]]:
    """Create or find the rows of stored files in one catalog request
    (`services.common.gallery`, as an upload does): (image id, status) of each, status
    `pending` when it needs indexing; an image being deleted is left out."""
    out: list[tuple[int, str]] = []
    results = register_many(ctx.clients.catalog.call, ctx.images_dir, stored, tags=tags or [],
                            uploader=uploader, index_tags=ctx.clients.index.set_tags)
    for image, added in zip(stored, results, strict=True):
        if isinstance(added, ImageBeingDeleted):
            logger.warning("skipping %s: %s", image.filename, added.message)
            continue
        status = ImageStatus.pending if added.to_ingest else str(added.image["status"])
        out.append((int(added.image["id"]), status))
    return out


def bulk_ingest(ctx: TaskContext, job_id: int, *, folder: str | None = None,
                paths: list[str] | None = None, tags: list[str] | None = None,
                uploader: str | None = None, on_near_duplicate: str = "keep") -> int:
    """Store, register and enqueue every image of the source; returns the number of images.

    Ingests are enqueued `ingest_batch` images per task (embedded in one request). The ids
    wait in compact arrays (8 bytes an image) until every item is registered.
    """
    source = Path(folder) if folder else None
    pending = array("q")
    indexed = array("q")  # already indexed: done at once
    gone: list[tuple[int, str]] = []  # deleting or removed meanwhile (rare): skipped
    page = array("q")
    count = 0
    batch: list[StoredImage] = []

    def flush() -> None:
        nonlocal count
        for image_id, status in register_files(ctx, batch, tags=tags, uploader=uploader):
            count += 1
            page.append(image_id)
            if status == ImageStatus.pending:
                pending.append(image_id)
            elif status == ImageStatus.indexed:
                indexed.append(image_id)
            else:
                gone.append((image_id, status))
        batch.clear()
        ctx.clients.catalog.register_items(job_id, page.tolist())
        ctx.heartbeat(job_id)
        del page[:]

    for path in image_files(source, paths):
        stored = store_file(ctx, path)
        if stored is not None:
            batch.append(stored)
        if len(batch) >= ctx.settings.page_size:
            flush()
    flush()
    logger.info("bulk job %s: %d images registered, %d to ingest", job_id, count, len(pending))
    for start in range(0, len(indexed), ctx.settings.page_size):
        record_items(ctx, job_id, [(image_id, ItemState.done, None) for image_id in
                                   indexed[start:start + ctx.settings.page_size]])
    record_items(ctx, job_id, [(image_id, ItemState.skipped, f"image is {status}")
                               for image_id, status in gone])
    for kwargs in ingest_messages(pending.tolist(), job_id=job_id,
                                  on_near_duplicate=on_near_duplicate,
                                  batch=ctx.settings.ingest_batch):
        ctx.enqueue(queue.INGEST, kwargs)
    if not count:
        ctx.clients.catalog.finish_job(job_id, JobStatus.succeeded)
        ctx.forget_heartbeat(job_id)
    else:
        finish_if_settled(ctx, job_id)
    return count
