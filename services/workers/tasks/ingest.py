"""`ingest(image_id)`: a pending row becomes an indexed, searchable image.

Steps, each safe to repeat: read the row, read the file, write the thumbnail (content-addressed,
atomic), embed, look for a near duplicate, upsert the vector (idempotent by id), move the row
pending -> indexed (compare-and-set), record the job item. A worker killed between any two steps
leaves a state the next run finishes: the vector upserted but the row still pending is upserted
again; a row already indexed with its vector present is a no-op.
"""

from __future__ import annotations

import logging
from typing import Any

from services.common.errors import DomainError
from services.common.storage import resolve
from services.workers.clients import StatusConflict
from services.workers.tasks import removal
from services.workers.tasks.context import TaskContext
from services.workers.tasks.progress import record_item
from services.workers.thumbnails import ensure_thumbnail

logger = logging.getLogger(__name__)

NEAR_DUPLICATE_POLICIES = ("keep", "skip")


class PermanentFailure(DomainError):
    """Retrying cannot help (the image is bad, the file is missing, the model differs)."""

    code = "ingest_failed"


def ingest(ctx: TaskContext, image_id: int, job_id: int | None = None,
           on_near_duplicate: str = "keep") -> str:
    """Index image `image_id`; returns the outcome (indexed, skipped, failed, absent, noop)."""
    if on_near_duplicate not in NEAR_DUPLICATE_POLICIES:
        on_near_duplicate = "keep"
    catalog = ctx.clients.catalog
    row = catalog.get_image(image_id)
    if row is None:
        record_item(ctx, job_id, image_id, "skipped", "image_not_found")
        return "absent"
    status = row["status"]
    if status == "indexed" and image_id in ctx.clients.index.present([image_id]):
        record_item(ctx, job_id, image_id, "done")
        return "noop"
    if status in ("deleting", "removed"):
        record_item(ctx, job_id, image_id, "skipped", f"image is {status}")
        return "skipped"
    if status == "failed":
        record_item(ctx, job_id, image_id, "failed", row.get("error") or "failed")
        return "failed"
    try:
        return _index(ctx, row, job_id, on_near_duplicate)
    except PermanentFailure as exc:
        return _fail(ctx, row, job_id, exc.message)
    except DomainError as exc:
        if 400 <= exc.status < 500 and not isinstance(exc, StatusConflict):
            # The embedding service refused the image (not an image, truncated, too large):
            # no retry will change its answer.
            return _fail(ctx, row, job_id, f"{exc.code}: {exc.message}")
        raise


def _fail(ctx: TaskContext, row: dict[str, Any], job_id: int | None, message: str) -> str:
    image_id = int(row["id"])
    logger.warning("ingest of image %s failed: %s", image_id, message)
    if row["status"] == "pending":
        try:
            ctx.clients.catalog.transition(image_id, "pending", "failed", error=message)
        except StatusConflict as exc:
            logger.info("image %s moved to %s meanwhile", image_id, exc.current)
    record_item(ctx, job_id, image_id, "failed", message)
    return "failed"


def _index(ctx: TaskContext, row: dict[str, Any], job_id: int | None,
           on_near_duplicate: str) -> str:
    image_id = int(row["id"])
    settings = ctx.settings
    path = resolve(ctx.images_dir, row["storage_key"])
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise PermanentFailure(f"the image file {row['storage_key']} is missing") from exc
    try:
        thumb_key = ensure_thumbnail(
            ctx.thumbs_dir, row["sha256"], data, size=settings.thumbnail_size,
            quality=settings.thumbnail_quality, max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels)
    except DomainError as exc:
        raise PermanentFailure(f"{exc.code}: {exc.message}") from exc
    model, vectors = ctx.clients.embedding.embed([data])
    duplicate_of, score = _near_duplicate(ctx, image_id, vectors, model)

    if duplicate_of is not None and on_near_duplicate == "skip" and row["status"] == "pending":
        return _skip(ctx, row, job_id, duplicate_of, score)

    try:
        ctx.clients.index.upsert([image_id], vectors, model)
    except DomainError as exc:
        if exc.code in ("model_mismatch", "dimension_mismatch"):
            raise PermanentFailure(
                f"{exc.code}: the index holds vectors of another model; run a reindex") from exc
        raise
    if row["status"] == "indexed":
        # Re-queued by reconcile: the row said indexed but its vector was missing (after a
        # reindex, the model may have changed too: the row names the model of its vector).
        if row.get("model_id") != model:
            ctx.clients.catalog.set_model([image_id], model)
        record_item(ctx, job_id, image_id, "done")
        return "indexed"
    try:
        ctx.clients.catalog.transition(image_id, "pending", "indexed", model_id=model,
                                       thumbnail_key=thumb_key, near_duplicate_of=duplicate_of)
    except StatusConflict as exc:
        if exc.current != "indexed":
            # Deleted while we embedded: the delete may have run before our upsert, so take
            # the vector out again (removal is idempotent) rather than leave an orphan.
            ctx.clients.index.remove([image_id])
            record_item(ctx, job_id, image_id, "skipped", f"image is {exc.current}")
            return "skipped"
    message = (f"near_duplicate_of={duplicate_of} score={score:.4f}"
               if duplicate_of is not None else None)
    record_item(ctx, job_id, image_id, "done", message)
    return "indexed"


def _near_duplicate(ctx: TaskContext, image_id: int, vectors: Any, model: str,
                    ) -> tuple[int | None, float]:
    """The most similar other image at or above the threshold, with its cosine score."""
    try:
        results = ctx.clients.index.search(vectors, 2, model)
    except DomainError as exc:
        if exc.code in ("model_mismatch", "dimension_mismatch"):
            raise PermanentFailure(
                f"{exc.code}: the index holds vectors of another model; run a reindex") from exc
        raise
    ids, scores = results[0] if results else ([], [])
    for other, score in zip(ids, scores, strict=False):
        # A re-run after a crash finds this image's own vector: never its own duplicate.
        if other != image_id and score >= ctx.settings.near_duplicate_threshold:
            return other, score
    return None, 0.0


def _skip(ctx: TaskContext, row: dict[str, Any], job_id: int | None, duplicate_of: int,
          score: float) -> str:
    """The uploader asked to skip near duplicates: pending -> deleting -> removed, file gone."""
    image_id = int(row["id"])
    try:
        ctx.clients.catalog.transition(image_id, "pending", "deleting",
                                       near_duplicate_of=duplicate_of)
    except StatusConflict as exc:
        if exc.current != "deleting":
            raise
    removal.remove_artifacts(ctx, row)
    try:
        ctx.clients.catalog.transition(image_id, "deleting", "removed")
    except StatusConflict as exc:
        if exc.current != "removed":
            raise
    record_item(ctx, job_id, image_id, "skipped",
                f"near_duplicate_of={duplicate_of} score={score:.4f}")
    return "skipped"
