"""`delete(image_id)`: a row marked deleting loses its vector, thumbnail and file, then the row.

The order matters for crash safety: the row goes last, so a worker killed half-way leaves a
`deleting` row that the retried task (or reconcile) finishes; every step is idempotent.
"""

from __future__ import annotations

import logging
from typing import Any

from services.common.storage import resolve, thumbnail_key
from services.common.vocabulary import GONE, ItemState
from services.workers.tasks.context import TaskContext
from services.workers.tasks.progress import record_item

logger = logging.getLogger(__name__)


def remove_artifacts(ctx: TaskContext, row: dict[str, Any]) -> None:
    """Vector, thumbnail and file of `row`, in that order; absent ones are fine."""
    image_id = int(row["id"])
    ctx.clients.index.remove([image_id])
    sha256 = str(row["sha256"])
    if row.get("thumbnail_key"):
        resolve(ctx.thumbs_dir, row["thumbnail_key"]).unlink(missing_ok=True)
    key = str(row["storage_key"])
    # Keys are content-addressed (they contain the sha256) and sha256 is unique in the catalog,
    # so no other row can share this file; a key without this row's hash is not ours to remove.
    if sha256 in key:
        resolve(ctx.images_dir, key).unlink(missing_ok=True)
    else:
        logger.warning("image %s: storage key %s does not carry its sha256; file kept",
                       image_id, key)
    # A thumbnail written by a run that crashed before recording its key.

    resolve(ctx.thumbs_dir, thumbnail_key(sha256)).unlink(missing_ok=True)


def delete(ctx: TaskContext, image_id: int, job_id: int | None = None) -> str:
    """Remove image `image_id` for good; returns the outcome (deleted, absent, refused)."""
    catalog = ctx.clients.catalog
    row = catalog.get_image(image_id)
    if row is None:
        ctx.clients.index.remove([image_id])
        record_item(ctx, job_id, image_id, ItemState.done)
        return "absent"
    if row["status"] not in GONE:
        message = f"image is {row['status']}, not deleting"
        logger.warning("delete of image %s refused: %s", image_id, message)
        record_item(ctx, job_id, image_id, ItemState.failed, message)
        return "refused"
    remove_artifacts(ctx, row)
    catalog.delete_image(image_id)
    record_item(ctx, job_id, image_id, ItemState.done)
    return "deleted"
