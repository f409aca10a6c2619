"""`ingest(image_ids)`: pending rows become indexed, searchable images, embedded together.

One task carries a batch of images (`workers.ingest_batch`, from the upload or bulk ingest
that enqueued them; reconcile re-queues single images). Its steps, each safe to repeat: read
the rows (one lookup), read each file and write its thumbnail (content-addressed, atomic),
embed every image in one request (so the embedding service runs one full batch), look for
near duplicates (one index search, plus the earlier images of the batch), upsert the vectors
(one call, idempotent by id), move the rows pending -> indexed (one batch compare-and-set:
a row deleted meanwhile is reported, not moved, and its vector removed again), move the
rows that failed pending -> failed (one more), record the job items (one request). A
worker killed between any two steps leaves a state the next run finishes: the vectors
upserted but the rows still pending are upserted again; a row already indexed with its
vector present is a no-op. One bad image fails alone: the others of its batch are embedded
without it.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.common.errors import DomainError, StatusConflict
from services.common.storage import resolve
from services.common.vocabulary import GONE, ImageStatus, ItemState
from services.workers.clients import Moved
from services.workers.tasks import removal
from services.workers.tasks.context import TaskContext
from services.workers.tasks.progress import Outcome, record_items
from services.workers.thumbnails import ensure_thumbnail

logger = logging.getLogger(__name__)

NEAR_DUPLICATE_POLICIES = ("keep", "skip")


class PermanentFailure(DomainError):
    """Retrying cannot help (the image is bad, the file is missing, the model differs)."""

    code = "ingest_failed"


@dataclass
class _Item:
    row: dict[str, Any]
    data: bytes
    thumb_key: str

    @property
    def id(self) -> int:
        return int(self.row["id"])


class _Batch:
    """The outcomes and job items of one task's images, recorded together at the end; the
    rows that failed are moved `pending -> failed` together too (`write_failures`)."""

    def __init__(self, ctx: TaskContext, job_id: int | None) -> None:
        self.ctx = ctx
        self.job_id = job_id
        self.outcomes: dict[int, str] = {}
        self.items: list[Outcome] = []
        self.failures: dict[int, str] = {}  # pending rows to move to failed -> message

    def settle(self, image_id: int, outcome: str, state: str, message: str | None = None,
               ) -> None:
        self.outcomes[image_id] = outcome
        self.items.append((image_id, state, message))

    def fail(self, row: dict[str, Any], message: str) -> None:
        image_id = int(row["id"])
        logger.warning("ingest of image %s failed: %s", image_id, message)
        if row["status"] == ImageStatus.pending:
            self.failures[image_id] = message
        self.settle(image_id, "failed", ItemState.failed, message)

    def write_failures(self) -> None:
        """`pending -> failed` with its message for every failed row, in one request; a row
        that moved meanwhile (deleted, or indexed by another run) is left as it is."""
        if not self.failures:
            return
        moved = self.ctx.clients.catalog.transition_batch(
            ImageStatus.pending, ImageStatus.failed,
            [{"id": image_id, "error": message} for image_id, message in self.failures.items()])
        for image_id, result in moved.items():
            if not result.changed:
                logger.info("image %s moved to %s meanwhile", image_id, result.current)
        self.failures.clear()


def ingest(ctx: TaskContext, image_id: int | None = None, job_id: int | None = None,
           on_near_duplicate: str = "keep", image_ids: list[int] | None = None) -> str:
    """Index image `image_id`, or the images `image_ids` together. Returns the outcome of one
    image (indexed, skipped, failed, absent, noop), or `outcome=count` pairs for a batch."""
    ids = list(image_ids or [])
    if image_id is not None:
        ids.append(int(image_id))
    outcomes = ingest_batch(ctx, ids, job_id, on_near_duplicate)
    if image_ids is None and image_id is not None:
        return outcomes[int(image_id)]
    counts = Counter(outcomes.values())
    return ", ".join(f"{name}={n}" for name, n in sorted(counts.items()))


def ingest_batch(ctx: TaskContext, image_ids: list[int], job_id: int | None = None,
                 on_near_duplicate: str = "keep") -> dict[int, str]:
    """Index `image_ids` together; returns each image's outcome."""
    if on_near_duplicate not in NEAR_DUPLICATE_POLICIES:
        on_near_duplicate = "keep"
    ids = list(dict.fromkeys(int(i) for i in image_ids))
    batch = _Batch(ctx, job_id)
    if not ids:
        return batch.outcomes
    rows = {int(r["id"]): r for r in ctx.clients.catalog.lookup(ids)}
    indexed = [i for i in ids if i in rows and rows[i]["status"] == ImageStatus.indexed]
    present = ctx.clients.index.present(indexed) if indexed else set()
    items: list[_Item] = []
    for image_id in ids:
        row = rows.get(image_id)
        status = row["status"] if row is not None else None
        if row is None:
            batch.settle(image_id, "absent", ItemState.skipped, "image_not_found")
        elif status == ImageStatus.indexed and image_id in present:
            batch.settle(image_id, "noop", ItemState.done)
        elif status in GONE:
            batch.settle(image_id, "skipped", ItemState.skipped, f"image is {status}")
        elif status == ImageStatus.failed:
            batch.settle(image_id, "failed", ItemState.failed, row.get("error") or "failed")
        else:
            try:
                items.append(_prepare(ctx, row))
            except PermanentFailure as exc:
                batch.fail(row, exc.message)
    if items:
        try:
            _index(ctx, batch, items, on_near_duplicate)
        except PermanentFailure as exc:
            _fail_rest(batch, items, exc.message)
        except DomainError as exc:
            if not _refused(exc):
                raise
            _fail_rest(batch, items, f"{exc.code}: {exc.message}")
    # Not written when a transient error interrupts the batch: its retry (or reconcile)
    # finds the bad images pending and fails them again.
    batch.write_failures()
    record_items(ctx, job_id, batch.items)
    return batch.outcomes


def _fail_rest(batch: _Batch, items: list[_Item], message: str) -> None:
    for item in items:
        if item.id not in batch.outcomes:
            batch.fail(item.row, message)


def _prepare(ctx: TaskContext, row: dict[str, Any]) -> _Item:
    """Read the file and write the thumbnail of one pending (or re-queued indexed) row."""
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
    return _Item(row, data, thumb_key)


def _refused(exc: DomainError) -> bool:
    """The embedding service refused an image (not an image, truncated, too large): no retry
    will change its answer."""
    return 400 <= exc.status < 500 and not isinstance(exc, StatusConflict)


def _embed(ctx: TaskContext, batch: _Batch, items: list[_Item],
           ) -> tuple[str | None, list[_Item], NDArray[np.float32] | None]:
    """One request for every image; an image the service refuses fails alone and the others
    are sent again without it. Returns (model, items embedded, (n, dim) vectors)."""
    try:
        model, vectors = ctx.clients.embedding.embed([item.data for item in items])
        return model, items, vectors
    except DomainError as exc:
        if not _refused(exc):
            raise
        if len(items) == 1:
            batch.fail(items[0].row, f"{exc.code}: {exc.message}")
            return None, [], None
        index = exc.detail.get("index") if isinstance(exc.detail, dict) else None
        if not isinstance(index, int) or not 0 <= index < len(items):
            # The service did not say which image: ask about each on its own.
            return _embed_each(ctx, batch, items)
        batch.fail(items[index].row, f"{exc.code}: {exc.message}")
    return _embed(ctx, batch, items[:index] + items[index + 1:])


def _embed_each(ctx: TaskContext, batch: _Batch, items: list[_Item],
                ) -> tuple[str | None, list[_Item], NDArray[np.float32] | None]:
    model: str | None = None
    kept: list[_Item] = []
    rows: list[NDArray[np.float32]] = []
    for item in items:
        got, embedded, vectors = _embed(ctx, batch, [item])
        if vectors is not None and (model is None or got == model):
            model = got
            kept += embedded
            rows.append(vectors)
    return model, kept, (np.concatenate(rows) if rows else None)


def _mismatch(exc: DomainError) -> PermanentFailure | None:
    if exc.code in ("model_mismatch", "dimension_mismatch"):
        return PermanentFailure(
            f"{exc.code}: the index holds vectors of another model; run a reindex")
    return None


def _index(ctx: TaskContext, batch: _Batch, items: list[_Item], on_near_duplicate: str) -> None:
    model, items, vectors = _embed(ctx, batch, items)
    if model is None or vectors is None or not items:
        return
    duplicates = _near_duplicates(ctx, items, vectors, model)
    keep: list[int] = []
    skipped: dict[int, int] = {}  # image of this batch skipped -> the image it duplicates
    skips: list[tuple[_Item, int, float]] = []
    for j, item in enumerate(items):
        duplicate_of, score = duplicates[j]
        if duplicate_of in skipped:
            duplicate_of = skipped[duplicate_of]
            duplicates[j] = (duplicate_of, score)
        if (duplicate_of is not None and on_near_duplicate == "skip"
                and item.row["status"] == ImageStatus.pending):
            skips.append((item, duplicate_of, score))
            skipped[item.id] = duplicate_of
        else:
            keep.append(j)
    _skip(ctx, batch, skips)
    if not keep:
        return
    sent = {items[j].id: sorted(items[j].row.get("tags") or []) for j in keep}
    try:
        ctx.clients.index.upsert(list(sent), vectors[keep], model, tags=list(sent.values()))
    except DomainError as exc:
        failure = _mismatch(exc)
        if failure is not None:
            raise failure from exc
        raise
    _follow_tags(ctx, sent)
    # Re-queued by reconcile: the row said indexed but its vector was missing (after a
    # reindex, the model may have changed too: the row names the model of its vector).
    stale_model = [items[j].id for j in keep if items[j].row["status"] == ImageStatus.indexed
                   and items[j].row.get("model_id") != model]
    if stale_model:
        ctx.clients.catalog.set_model(stale_model, model)
    _finish(ctx, batch, [items[j] for j in keep], model, [duplicates[j] for j in keep])


def _follow_tags(ctx: TaskContext, sent: dict[int, list[str]]) -> None:
    """The upsert carried the tags the rows had when the batch began; a tag added since
    (an upload of the same file with more tags) reached the index already and the upsert
    overwrote it. Read the rows again and send what changed: a tag change after this read
    reaches the index after the upsert, so it is not lost."""
    now = {int(row["id"]): sorted(row.get("tags") or [])
           for row in ctx.clients.catalog.lookup(list(sent)) if row["status"] not in GONE}
    changed = [i for i, tags in now.items() if tags != sent.get(i)]
    if changed:
        ctx.clients.index.set_tags(changed, [now[i] for i in changed])


def _finish(ctx: TaskContext, batch: _Batch, items: list[_Item], model: str,
            duplicates: list[tuple[int | None, float]]) -> None:
    """pending -> indexed with the model, thumbnail and near duplicate of the vector upserted,
    for every pending row of the batch in one request."""
    moves = [{"id": item.id, "model_id": model, "thumbnail_key": item.thumb_key,
              "near_duplicate_of": duplicate_of}
             for item, (duplicate_of, _) in zip(items, duplicates, strict=True)
             if item.row["status"] == ImageStatus.pending]
    moved = ctx.clients.catalog.transition_batch(ImageStatus.pending, ImageStatus.indexed,
                                                 moves)
    gone: list[tuple[_Item, str]] = []
    for item, (duplicate_of, score) in zip(items, duplicates, strict=True):
        if item.row["status"] == ImageStatus.indexed:
            batch.settle(item.id, ImageStatus.indexed, ItemState.done)
            continue
        result = moved[item.id]
        if not result.changed and result.current != ImageStatus.indexed:
            gone.append((item, result.current))
            continue
        message = (f"near_duplicate_of={duplicate_of} score={score:.4f}"
                   if duplicate_of is not None else None)
        batch.settle(item.id, ImageStatus.indexed, ItemState.done, message)
    if gone:
        # Deleted while we embedded: the delete may have run before our upsert, so take the
        # vectors out again (removal is idempotent) rather than leave orphans.
        ctx.clients.index.remove([item.id for item, _ in gone])
        for item, current in gone:
            batch.settle(item.id, "skipped", ItemState.skipped, f"image is {current}")


def _near_duplicates(ctx: TaskContext, items: list[_Item], vectors: NDArray[np.float32],
                     model: str) -> list[tuple[int | None, float]]:
    """Per image, the most similar other image at or above the threshold, with its cosine
    score: in the index, or an earlier image of this batch (not yet in the index)."""
    threshold = ctx.settings.near_duplicate_threshold
    ids = [item.id for item in items]
    own = set(ids)
    try:
        # A re-run after a crash finds this batch's own vectors: ask for enough neighbours.
        results = ctx.clients.index.search(vectors, len(ids) + 1, model)
    except DomainError as exc:
        failure = _mismatch(exc)
        if failure is not None:
            raise failure from exc
        raise
    within = vectors @ vectors.T  # (n, n) cosine: the vectors are L2-normalised
    out: list[tuple[int | None, float]] = []
    for j in range(len(ids)):
        best: tuple[int | None, float] = (None, 0.0)
        found, scores = results[j] if j < len(results) else ([], [])
        for other, score in zip(found, scores, strict=False):
            # Never its own duplicate, nor one of the batch (compared below, in order).
            if other not in own and score >= threshold and score > best[1]:
                best = (other, score)
        for i in range(j):
            score = float(within[j, i])
            if score >= threshold and score > best[1]:
                best = (ids[i], score)
        out.append(best)
    return out


def _raise_if_moved_elsewhere(moved: dict[int, Moved], frm: str, to: str) -> None:
    """A skipped row that is neither moved now nor already in `to` was changed by someone
    else: stop, as a single transition's conflict did (the retry reads the rows again)."""
    for image_id, result in moved.items():
        if not result.changed and result.current != to:
            raise StatusConflict(f"image {image_id} is {result.current}, not {frm}",
                                 image_id=image_id, current=result.current, expected=frm)


def _skip(ctx: TaskContext, batch: _Batch, skips: list[tuple[_Item, int, float]]) -> None:
    """The uploader asked to skip near duplicates: pending -> deleting -> removed, file gone
    (each transition one request for all of them). The rows marked are finished even when
    another row of the batch conflicts, so none is left deleting for reconcile."""
    if not skips:
        return
    catalog = ctx.clients.catalog
    marked = catalog.transition_batch(
        ImageStatus.pending, ImageStatus.deleting,
        [{"id": item.id, "near_duplicate_of": duplicate_of} for item, duplicate_of, _ in skips])
    ours = [(item, duplicate_of, score) for item, duplicate_of, score in skips
            if marked[item.id].changed or marked[item.id].current == ImageStatus.deleting]
    for item, _, _ in ours:
        removal.remove_artifacts(ctx, item.row)
    removed = catalog.transition_batch(ImageStatus.deleting, ImageStatus.removed,
                                       [{"id": item.id} for item, _, _ in ours])
    for item, duplicate_of, score in ours:
        batch.settle(item.id, "skipped", ItemState.skipped,
                     f"near_duplicate_of={duplicate_of} score={score:.4f}")
    _raise_if_moved_elsewhere(marked, ImageStatus.pending, ImageStatus.deleting)
    _raise_if_moved_elsewhere(removed, ImageStatus.deleting, ImageStatus.removed)
