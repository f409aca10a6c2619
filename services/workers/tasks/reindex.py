"""`reindex(job_id)`: every indexed image re-embedded with the current model into a staging
index, then swapped in atomically. Search keeps using the live index until the swap; while the
staging exists the index service mirrors live upserts of the new model and every delete into it,
so ingests and deletes during a reindex are not lost.

After the swap the rows embedded into the new index get its model id (`model_id` on the row
says which model produced the vector search uses). A crash or retry starts over with a fresh
staging (creating one replaces the old). Rows the paging missed (deleted or added while it ran)
are repaired by reconcile: an indexed row without a vector in the new index is re-queued, and
its ingest records the model.
"""

from __future__ import annotations

import logging
from array import array

import numpy as np

from services.common.errors import DomainError
from services.common.storage import resolve
from services.common.vocabulary import JOB_FINISHED, ImageStatus, ItemState, JobStatus
from services.workers.tasks.context import TaskContext

logger = logging.getLogger(__name__)

EMBED_BATCH = 8


def reindex(ctx: TaskContext, job_id: int | None = None) -> int:
    """Rebuild the index with the embedding service's current model; returns images embedded."""
    catalog, index, embedding = ctx.clients.catalog, ctx.clients.index, ctx.clients.embedding
    if job_id is not None:
        job = catalog.get_job(job_id)
        if job is not None and job["status"] in JOB_FINISHED:
            return 0
    info = embedding.info()
    model, dim = str(info["model"]), int(info["dim"])
    index.staging_create(model, dim)
    logger.info("reindex job %s: staging created for %s", job_id, model)
    # Ids put in the staging, 8 bytes each: tens of millions of rows fit in memory.
    staged = array("q")
    after: str | None = None
    while True:
        images, after = catalog.list_images(status=ImageStatus.indexed,
                                            limit=ctx.settings.page_size, after=after)
        if not images:
            break
        ids = [int(image["id"]) for image in images]
        if job_id is not None:
            catalog.register_items(job_id, ids)
        for start in range(0, len(images), EMBED_BATCH):
            chunk = images[start:start + EMBED_BATCH]
            staged.extend(_embed_chunk(ctx, job_id, chunk, model))
        if job_id is not None:
            ctx.heartbeat(job_id)
        if after is None:
            break
    index.staging_commit()
    logger.info("reindex job %s: %d images embedded, staging committed", job_id, len(staged))
    _record_model(ctx, staged, model)
    if job_id is not None:
        catalog.finish_job(job_id, JobStatus.succeeded)
        ctx.forget_heartbeat(job_id)
    return len(staged)


def _record_model(ctx: TaskContext, staged: array[int], model: str) -> None:
    """Set `model` on the rows whose vectors the swapped-in index holds (indexed rows only:
    a row deleted meanwhile keeps its status and its old model id)."""
    step = ctx.settings.page_size
    updated = 0
    for start in range(0, len(staged), step):
        updated += len(ctx.clients.catalog.set_model(list(staged[start:start + step]), model))
    logger.info("reindex: model %s recorded on %d of %d rows", model, updated, len(staged))


def _tags(image: dict[str, object]) -> list[str]:
    tags = image.get("tags")
    return [str(t) for t in tags] if isinstance(tags, list) else []


def _embed_chunk(ctx: TaskContext, job_id: int | None, chunk: list[dict[str, object]],
                 model: str) -> list[int]:
    """Embed `chunk` into the staging; returns the ids staged."""
    catalog = ctx.clients.catalog
    ids: list[int] = []
    files: list[bytes] = []
    for image in chunk:
        image_id = int(str(image["id"]))
        try:
            files.append(resolve(ctx.images_dir, str(image["storage_key"])).read_bytes())
        except FileNotFoundError:
            if job_id is not None:
                catalog.record_item(job_id, image_id, ItemState.failed, "the image file is missing")
            continue
        ids.append(image_id)
    if not ids:
        return []
    try:
        got_model, vectors = ctx.clients.embedding.embed(files)
    except DomainError as exc:
        if not 400 <= exc.status < 500:
            raise
        if len(chunk) == 1:
            return _record_failed(ctx, job_id, ids, f"{exc.code}: {exc.message}")
        # One bad file refuses the whole batch: embed them one by one to find it.
        return [i for image in chunk for i in _embed_chunk(ctx, job_id, [image], model)]
    if got_model != model:
        raise DomainError(f"the embedding model changed during the reindex ({model} -> "
                          f"{got_model}); run it again", code="model_changed", status=409)
    tags_of = {int(str(image["id"])): _tags(image) for image in chunk}
    ctx.clients.index.staging_upsert(ids, np.asarray(vectors, dtype=np.float32), model,
                                     tags=[tags_of[i] for i in ids])
    if job_id is not None:
        catalog.record_items(job_id, [(image_id, ItemState.done, None) for image_id in ids])
    return ids


def _record_failed(ctx: TaskContext, job_id: int | None, ids: list[int],
                   message: str) -> list[int]:
    if job_id is not None:
        ctx.clients.catalog.record_items(
            job_id, [(image_id, ItemState.failed, message) for image_id in ids])
    return []
