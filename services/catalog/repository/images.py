"""Image rows: idempotent create by sha256, compare-and-set status transitions, queries."""

from __future__ import annotations

import base64
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.catalog.db.models import Image, ImageTag
from services.catalog.db.types import utcnow
from services.catalog.repository import counts
from services.catalog.repository import tags as tag_repo
from services.catalog.repository.errors import DuplicateIds, ImageNotFound, InvalidCursor
from services.catalog.repository.transitions import check_edge
from services.common.errors import StatusConflict
from services.common.vocabulary import GONE, ImageStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageRecord:
    id: int
    sha256: str
    original_filename: str
    storage_key: str
    thumbnail_key: str | None
    mime: str
    width: int
    height: int
    bytes: int
    status: str
    model_id: str | None
    error: str | None
    near_duplicate_of: int | None
    uploader: str | None
    created_at: datetime
    updated_at: datetime
    tags: list[str] = field(default_factory=list)


def _record(row: Image, tags: list[str]) -> ImageRecord:
    return ImageRecord(
        id=row.id, sha256=row.sha256, original_filename=row.original_filename,
        storage_key=row.storage_key, thumbnail_key=row.thumbnail_key, mime=row.mime,
        width=row.width, height=row.height, bytes=row.bytes, status=row.status,
        model_id=row.model_id, error=row.error, near_duplicate_of=row.near_duplicate_of,
        uploader=row.uploader, created_at=row.created_at, updated_at=row.updated_at, tags=tags,
    )


def _records(session: Session, rows: Sequence[Image]) -> list[ImageRecord]:
    tags = tag_repo.tags_of(session=session, image_ids=[r.id for r in rows])
    return [_record(r, tags[r.id]) for r in rows]


def _fresh(session: Session, image_id: int) -> Image | None:
    return session.execute(
        sa.select(Image).where(Image.id == image_id).execution_options(populate_existing=True)
    ).scalar_one_or_none()


def get_image(*, session: Session, image_id: int) -> ImageRecord:
    row = _fresh(session, image_id)
    if row is None:
        raise ImageNotFound(f"image {image_id} does not exist", detail={"id": image_id})
    return _records(session, [row])[0]


@dataclass(frozen=True)
class NewImage:
    """One image for `create_images`: its stored file's facts and the tags to add."""

    sha256: str
    original_filename: str
    storage_key: str
    mime: str
    width: int
    height: int
    bytes: int
    uploader: str | None = None
    tags: Sequence[str] = ()


def create_image(*, session: Session, **fields: Any) -> tuple[ImageRecord, bool]:
    """A `pending` row for these bytes (`NewImage`'s fields), or the existing row of the same
    sha256: (image, created). `create_images` with one image."""
    return create_images(session=session, images=[NewImage(**fields)])[0]


def create_images(*, session: Session, images: Sequence[NewImage]
                  ) -> list[tuple[ImageRecord, bool]]:
    """A `pending` row for each image, or the existing row of the same sha256, in one
    transaction; (image, created) for each, in the order given. Tags given are added in
    every case.

    An sha256 given twice gets one row: its first entry creates (or finds) it, the later ones
    find it. Concurrent calls with the same sha256 all get the one row: a call whose INSERT
    fails on the unique key rolls back and reads again, which finds the winner's row (racing
    batches of n images lose at most n times). New rows are inserted in sha256 order, so
    racing calls take their key locks in one order.
    """
    # Tags are checked before anything is written (InvalidTag changes nothing).
    names = [tag_repo.normalize_tags(image.tags) for image in images]
    firsts: dict[str, NewImage] = {}
    for image in images:
        firsts.setdefault(image.sha256, image)
    wanted = sorted(firsts)
    # Each lost race means another call committed a row this one was missing, which the next
    # read finds: with n sha256s, n + 1 reads see them all (two more for deletes that finish
    # in between).
    attempts = len(wanted) + 3
    for attempt in range(attempts):
        rows: dict[str, Image] = {}
        for part in tag_repo.chunks(wanted):
            found = session.execute(sa.select(Image).where(Image.sha256.in_(part)))
            rows.update((row.sha256, row) for row in found.scalars())
        now = utcnow()
        new = [Image(sha256=sha, original_filename=image.original_filename,
                     storage_key=image.storage_key, mime=image.mime, width=image.width,
                     height=image.height, bytes=image.bytes, status=ImageStatus.pending,
                     uploader=image.uploader, created_at=now, updated_at=now)
               for sha, image in sorted(firsts.items()) if sha not in rows]
        try:
            session.add_all(new)
            session.flush()
            break
        except IntegrityError:
            session.rollback()
            # Another call created one of these rows first: read again. A row that refused
            # ours and was deleted before we read it (a delete finishing at that moment) is
            # inserted again; a conflict that is not the sha256 keeps failing and is raised.
            if attempt == attempts - 1:
                raise
    rows.update((row.sha256, row) for row in new)
    tag_repo.attach_many(session=session, items=[
        (rows[image.sha256].id, rows[image.sha256].created_at, tags)
        for image, tags in zip(images, names, strict=True) if tags])
    if new:
        counts.apply(session, {ImageStatus.pending: len(new)})
    # Read back inside the transaction: a delete committed after ours cannot hide a row.
    records = {r.id: r for r in _records(session, list(rows.values()))}
    session.commit()
    for row in new:
        logger.info("image %d created", row.id, extra={"image_id": row.id})
    created = {row.sha256 for row in new}
    out: list[tuple[ImageRecord, bool]] = []
    for image in images:
        out.append((records[rows[image.sha256].id], image.sha256 in created))
        created.discard(image.sha256)  # a second entry of a new sha256 finds the first's row
    return out


@dataclass(frozen=True)
class Move:
    """One row of a batch transition and the fields it sets when it moves (see
    `_moved_values`)."""

    id: int
    model_id: str | None = None
    error: str | None = None
    thumbnail_key: str | None = None
    near_duplicate_of: int | None = None


def _moved_values(move: Move, to: str, now: datetime) -> dict[str, object]:
    """The columns a row moving to `to` gets: `indexed` clears the error and records the
    model, `failed` records the error (never empty), `pending` clears it; a thumbnail key and
    a near duplicate (never the row itself) are recorded when given."""
    values: dict[str, object] = {"status": to, "updated_at": now}
    if to == ImageStatus.indexed:
        values["error"] = None
        if move.model_id is not None:
            values["model_id"] = move.model_id
    elif to == ImageStatus.failed:
        values["error"] = move.error or "unknown error"
    elif to == ImageStatus.pending:
        values["error"] = None
    elif move.error is not None:
        values["error"] = move.error
    if move.thumbnail_key is not None:
        values["thumbnail_key"] = move.thumbnail_key
    if move.near_duplicate_of is not None and move.near_duplicate_of != move.id:
        values["near_duplicate_of"] = move.near_duplicate_of
    return values


def transition(
    *,
    session: Session,
    image_id: int,
    from_: str,
    to: str,
    model_id: str | None = None,
    error: str | None = None,
    thumbnail_key: str | None = None,
    near_duplicate_of: int | None = None,
) -> ImageRecord:
    """Compare-and-set `from_ -> to`: exactly one of several racing callers wins.

    The UPDATE carries `WHERE status = :from`; its row count decides. Raises
    `InvalidTransition` for an edge outside the graph, `ImageNotFound`, or `StatusConflict`
    (detail: the current status) when the row was not in `from_`.
    """
    check_edge(from_, to)
    move = Move(id=image_id, model_id=model_id, error=error, thumbnail_key=thumbnail_key,
                near_duplicate_of=near_duplicate_of)
    result = session.execute(
        sa.update(Image).where(Image.id == image_id, Image.status == from_)
        .values(**_moved_values(move, to, utcnow()))
        .execution_options(synchronize_session=False)
    )
    changed = result.rowcount == 1  # type: ignore[attr-defined]
    if changed:
        counts.apply(session, counts.moved(from_, to))
    session.commit()
    if not changed:
        current = get_image(session=session, image_id=image_id)
        raise StatusConflict(f"image {image_id} is {current.status}, not {from_}",
                             image_id=image_id, current=current.status, expected=from_)
    return get_image(session=session, image_id=image_id)


@dataclass(frozen=True)
class Moved:
    """What a batch transition did to one row: `status` is the row's status afterwards
    (`to` when it moved, the status that kept it from moving otherwise, None: no such row)."""

    id: int
    changed: bool
    status: str | None


def transition_batch(*, session: Session, from_: str, to: str, moves: Sequence[Move]
                     ) -> list[Moved]:
    """Compare-and-set `from_ -> to` on many rows at once, each with its own fields.

    The rows are locked and read in one statement per chunk (ascending id under the lock,
    as any other writer of a single row takes it), the rows in `from_` are updated (one
    statement per set of columns, executed for each row), and the others are reported with
    their status, not changed: a row another caller moved meanwhile is left to that caller,
    as a single transition's 409 would leave it. Returns one result per move, in the order
    given. `InvalidTransition` for an edge outside the graph and `DuplicateIds` for an id
    given twice change nothing.
    """
    check_edge(from_, to)
    ids = [move.id for move in moves]
    repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
    if repeated:
        raise DuplicateIds("each image may appear once in a batch transition",
                           detail={"ids": repeated})
    current: dict[int, str] = {}
    # Ascending ids in every chunk and across chunks: batches over the same rows lock them in
    # one order. An id the locked read did not return is read again under its lock before it
    # is reported as absent: on MariaDB, racing batches (8-12 threads over the same 24 rows)
    # now and then had one batch's whole locked read come back empty for rows that existed.
    ordered = sorted(ids)
    for attempt in range(2):
        wanted = [i for i in ordered if i not in current]
        for part in tag_repo.chunks(wanted):
            rows = session.execute(
                sa.select(Image.id, Image.status).where(Image.id.in_(part))
                .order_by(Image.id).with_for_update())
            current.update((int(image_id), str(status)) for image_id, status in rows)
        if attempt == 0 and len(current) == len(ids):
            break
    now = utcnow()
    # Rows setting the same columns share one statement, run with each row's parameters.
    groups: dict[tuple[str, ...], list[dict[str, object]]] = {}
    for move in moves:
        if current.get(move.id) == from_:
            values = _moved_values(move, to, now)
            groups.setdefault(tuple(values), []).append(
                {"b_id": move.id, **{f"b_{name}": v for name, v in values.items()}})
    table = cast(sa.Table, Image.__table__)
    for names, params in groups.items():
        session.execute(
            sa.update(table).where(table.c.id == sa.bindparam("b_id"), table.c.status == from_)
            .values({name: sa.bindparam(f"b_{name}") for name in names}),
            params,
        )
    changed = sum(len(params) for params in groups.values())
    counts.apply(session, counts.moved(from_, to, changed))
    session.commit()
    return [Moved(id=i, changed=current.get(i) == from_,
                  status=to if current.get(i) == from_ else current.get(i)) for i in ids]


def bulk_transition(
    *, session: Session, ids: Sequence[int], from_: Sequence[str], to: str
) -> tuple[list[int], list[int]]:
    """Move every id whose status is one of `from_` to `to` (compare-and-set per row).

    Returns (changed, unchanged) in the order given; absent ids are unchanged.
    """
    sources = list(dict.fromkeys(from_))
    for source in sources:
        check_edge(source, to)
    changed: list[int] = []
    unchanged: list[int] = []
    deltas: Counter[str] = Counter()
    now = utcnow()
    for image_id in dict.fromkeys(ids):
        # The row's status under its lock says which count it leaves.
        current = session.execute(
            sa.select(Image.status).where(Image.id == image_id).with_for_update()
        ).scalar_one_or_none()
        result = None
        if current in sources:
            result = session.execute(
                sa.update(Image).where(Image.id == image_id, Image.status == current)
                .values(status=to, updated_at=now).execution_options(synchronize_session=False)
            )
        if result is not None and result.rowcount == 1:  # type: ignore[attr-defined]
            changed.append(image_id)
            deltas.update(counts.moved(str(current), to))
        else:
            unchanged.append(image_id)
    counts.apply(session, deltas)
    session.commit()
    return changed, unchanged


def set_model(*, session: Session, ids: Sequence[int], model_id: str
              ) -> tuple[list[int], list[int]]:
    """Record `model_id` on the `indexed` rows among `ids` (after a reindex swapped the index).

    Returns (updated, unchanged) in the order given; rows in any other status, and absent
    ids, are unchanged: their vectors are not in the new index (or not yet).
    """
    wanted = list(dict.fromkeys(ids))
    updated: set[int] = set()
    now = utcnow()
    for part in tag_repo.chunks(wanted):
        hits = session.execute(
            sa.select(Image.id).where(Image.id.in_(part), Image.status == ImageStatus.indexed)
            .with_for_update()
        ).scalars().all()
        if hits:
            session.execute(
                sa.update(Image).where(Image.id.in_(hits), Image.status == ImageStatus.indexed)
                .values(model_id=model_id, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            updated.update(hits)
    session.commit()
    return ([i for i in wanted if i in updated], [i for i in wanted if i not in updated])


def delete_image(*, session: Session, image_id: int) -> None:
    """Remove the row (its tags go with it); only once it is `deleting` or `removed`."""
    gone = None
    for status in sorted(GONE):  # one status per DELETE: it says which count
        result = session.execute(
            sa.delete(Image).where(Image.id == image_id, Image.status == status)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            gone = status
            counts.apply(session, {status: -1})
            break
    session.commit()
    if gone is None:
        current = get_image(session=session, image_id=image_id)
        raise StatusConflict(
            f"image {image_id} is {current.status}; only deleting or removed rows are deleted",
            image_id=image_id, current=current.status, expected=sorted(GONE))


def lookup(*, session: Session, ids: Sequence[int], status: str | None = None
           ) -> list[ImageRecord]:
    """Rows of `ids` in the order given (each once); missing or other-status ids left out."""
    wanted = list(dict.fromkeys(ids))
    found: dict[int, Image] = {}
    for part in tag_repo.chunks(wanted):
        query = sa.select(Image).where(Image.id.in_(part))
        if status is not None:
            query = query.where(Image.status == status)
        for row in session.execute(query).scalars():
            found[row.id] = row
    return _records(session, [found[i] for i in wanted if i in found])


def encode_cursor(record: ImageRecord) -> str:
    """The position just after `record` in a listing ordered by (created_at, id)."""
    raw = f"{record.created_at.isoformat()}|{record.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """(created_at, id) of `encode_cursor`; `InvalidCursor` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, id_ = raw.rpartition("|")
        return datetime.fromisoformat(stamp), int(id_)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidCursor("the page cursor is not one this catalog returned") from exc


def list_images(
    *,
    session: Session,
    statuses: Sequence[str] = (),
    tags: Sequence[str] = (),
    uploader: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    q: str | None = None,
    limit: int = 50,
    offset: int = 0,
    after: tuple[datetime, int] | None = None,
    descending: bool = True,
    with_total: bool = True,
) -> tuple[list[ImageRecord], int | None]:
    """One page of images (newest first by default) and the total matching the filters
    (None unless `with_total`: counting reads every matching row, seconds at 10M).

    Pages either by `offset` or, at any depth in constant time, by keyset: `after` =
    (created_at, id) of the last row of the previous page (`encode_cursor`), read straight
    off the (status, created_at) / (created_at) indexes, whose entries end with the id.
    `created_from` is inclusive, `created_to` exclusive; `q` matches a case-insensitive
    substring of the original filename (taken literally: `%` and `_` are not wildcards).
    """
    names = tag_repo.normalize_tags(tags)
    found = tag_repo.tag_ids(session=session, names=names)
    if len(found) < len(names):  # a tag no image carries: nothing matches
        return [], 0 if with_total else None
    # With a tag filter the walk goes along that tag's rows of image_tags: their index
    # (tag_id, created_at, image_id) holds them in the listing's order (created_at is the
    # image's own, copied), so a page reads its rows off it and joins each image by its key,
    # whatever the tag's share of the images. The rarest tag leads; others are one probe each.
    tag_ids = tag_repo.rarest_first(session=session, tag_ids=[found[n] for n in names])
    stamp_col, id_col = ((ImageTag.created_at, ImageTag.image_id) if tag_ids
                         else (Image.created_at, Image.id))
    conditions: list[sa.ColumnElement[bool]] = []
    if tag_ids:
        conditions.append(ImageTag.tag_id == tag_ids[0])
        conditions += [tag_repo.carries_tag(t) for t in tag_ids[1:]]
    if q:
        conditions.append(filename_contains(q))
    if len(statuses) == 1 and after is not None:
        # As a range, not an equality: MariaDB answers `status = x` by walking every x row
        # from the newest (ref access) whatever the created_at bound; a range lets it start
        # at the cursor. Several statuses are a range already. (BETWEEN x AND x is folded
        # back into an equality; two comparisons are not.)
        conditions += [Image.status >= statuses[0], Image.status <= statuses[0]]
    elif statuses:
        conditions.append(Image.status.in_(list(statuses)))
    if uploader is not None:
        conditions.append(Image.uploader == uploader)
    if created_from is not None:
        conditions.append(stamp_col >= created_from)
    if created_to is not None:
        conditions.append(stamp_col < created_to)
    source = (sa.join(Image, ImageTag, ImageTag.image_id == Image.id) if tag_ids
              else Image.__table__)
    total = session.execute(
        sa.select(sa.func.count()).select_from(source).where(*conditions)
    ).scalar_one() if with_total else None
    if after is not None:
        stamp, last_id = after
        # Spelled out rather than a row comparison, which MariaDB does not turn into an
        # index range; the plain bound on created_at is what starts the walk at the
        # cursor (with only the OR, a status filter walks its rows from the top).
        if descending:
            conditions += [stamp_col <= stamp, sa.or_(stamp_col < stamp, id_col < last_id)]
        else:
            conditions += [stamp_col >= stamp, sa.or_(stamp_col > stamp, id_col > last_id)]
    order = (stamp_col.desc(), id_col.desc()) if descending else (stamp_col.asc(), id_col.asc())
    rows = session.execute(
        sa.select(Image).select_from(source).where(*conditions).order_by(*order)
        .limit(limit).offset(offset)
    ).scalars().all()
    return _records(session, rows), None if total is None else int(total)


# '!' rather than a backslash: MySQL reads backslashes in string literals as escapes of their
# own, so a backslash ESCAPE clause would mean different things on the two backends.
LIKE_ESCAPE = "!"


def filename_contains(text: str) -> sa.ColumnElement[bool]:
    """original_filename contains `text`, case-insensitively, with LIKE wildcards escaped."""
    escaped = "".join(LIKE_ESCAPE + c if c in "%_" + LIKE_ESCAPE else c for c in text.lower())
    return sa.func.lower(Image.original_filename).like(f"%{escaped}%", escape=LIKE_ESCAPE)


def ids_with_tags(*, session: Session, tags: Sequence[str], status: str | None = ImageStatus.indexed
                  ) -> list[int]:
    """Ids (ascending) of images carrying every tag; for the index's allowed_ids filter."""
    names = tag_repo.normalize_tags(tags)
    if not names:
        return []
    query = sa.select(Image.id).where(Image.id.in_(tag_repo.having_all_tags(names)))
    if status is not None:
        query = query.where(Image.status == status)
    return list(session.execute(query.order_by(Image.id)).scalars())


def add_tags(*, session: Session, image_id: int, tags: Sequence[str]) -> ImageRecord:
    names = tag_repo.normalize_tags(tags)
    image = get_image(session=session, image_id=image_id)
    tag_repo.attach(session=session, image_id=image_id, created_at=image.created_at,
                    names=names)
    session.commit()
    return get_image(session=session, image_id=image_id)


def remove_tags(*, session: Session, image_id: int, tags: Sequence[str]) -> ImageRecord:
    names = tag_repo.normalize_tags(tags)
    get_image(session=session, image_id=image_id)
    tag_repo.detach(session=session, image_id=image_id, names=names)
    session.commit()
    return get_image(session=session, image_id=image_id)


def status_counts(*, session: Session) -> dict[str, int]:
    """Rows per status; every status present, zero where none (the kept counts: O(1))."""
    return counts.read(session)


def stale(*, session: Session, status: str, older_than_s: float, limit: int
          ) -> list[ImageRecord]:
    """Rows in `status` not updated for `older_than_s` seconds, oldest first (for reconcile)."""
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    rows = session.execute(
        sa.select(Image).where(Image.status == status, Image.updated_at < cutoff)
        .order_by(Image.updated_at, Image.id).limit(limit)
    ).scalars().all()
    return _records(session, rows)

