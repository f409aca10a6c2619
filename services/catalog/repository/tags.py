"""Tags: normalised names, get-or-create without races, counts."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.orm import Session, aliased

from services.catalog.db.models import Image, ImageTag, Tag
from services.catalog.repository.errors import InvalidTag
from services.common.tags import tag_key

MAX_TAG_LENGTH = 64
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f,]")
T = TypeVar("T")
# SQLite allows a few thousand bound parameters per statement; MySQL packets are finite too.
CHUNK = 500
# rarest_first counts a tag's rows up to this many.
RAREST_CAP = 100_000


def normalize_tags(tags: Iterable[str]) -> list[str]:
    """Trimmed, lower-cased, de-duplicated tag names in first-seen order.

    Tags compare case-insensitively (`Cat` is `cat`) the same way on every backend; commas
    are refused because the public API takes tag lists comma-separated.
    """
    out: list[str] = []
    for raw in tags:
        name = tag_key(raw)
        if not name or len(name) > MAX_TAG_LENGTH or _FORBIDDEN.search(name):
            raise InvalidTag(
                f"a tag is 1-{MAX_TAG_LENGTH} characters without commas or control characters",
                detail={"tag": raw[:100]},
            )
        if name not in out:
            out.append(name)
    return out


def chunks(values: Sequence[T], size: int = CHUNK) -> Iterable[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _insert_ignoring_duplicates(session: Session, table: Any,
                                rows: list[dict[str, object]]) -> None:
    """INSERT rows, silently keeping rows whose key already exists (concurrent callers)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        session.execute(sqlite.insert(table).on_conflict_do_nothing(), rows)
    elif dialect in ("mysql", "mariadb"):
        stmt = mysql.insert(table)
        first = next(iter(rows[0]))
        session.execute(stmt.on_duplicate_key_update({first: stmt.inserted[first]}), rows)
    else:
        # The settings only build SQLite and MySQL URLs; a hand-written URL can still name
        # another database, which the catalog's portable-upsert code does not cover.
        raise ValueError(f"the catalog runs on SQLite or MySQL/MariaDB, not {dialect}")


def ensure_tags(*, session: Session, names: list[str]) -> dict[str, int]:
    """Tag ids of `names` (normalised), creating the missing ones."""
    out: dict[str, int] = {}
    for part in chunks(names):
        _insert_ignoring_duplicates(session, Tag, [{"name": n} for n in part])
        rows = session.execute(sa.select(Tag.name, Tag.id).where(Tag.name.in_(part)))
        out.update((name, tag_id) for name, tag_id in rows)
    return out


def attach(*, session: Session, image_id: int, created_at: datetime, names: list[str]) -> None:
    """Tag the image; `created_at` is the image's (each tag row keeps a copy, see ImageTag)."""
    attach_many(session=session, items=[(image_id, created_at, names)])


def attach_many(*, session: Session,
                items: Sequence[tuple[int, datetime, list[str]]]) -> None:
    """`attach` for many images (image id, its created_at, normalised names): the tags and
    then the links are inserted in one statement per chunk of rows."""
    ids = ensure_tags(session=session, names=list(dict.fromkeys(
        name for _, _, names in items for name in names)))
    links = {(image_id, ids[name]): created_at
             for image_id, created_at, names in items for name in names}
    rows = [{"image_id": image_id, "tag_id": tag_id, "created_at": created_at}
            for (image_id, tag_id), created_at in links.items()]
    for start in range(0, len(rows), CHUNK):
        _insert_ignoring_duplicates(session, ImageTag, rows[start:start + CHUNK])


def tag_ids(*, session: Session, names: list[str]) -> dict[str, int]:
    """Ids of the existing tags among `names` (normalised); missing names are left out."""
    if not names:
        return {}
    rows = session.execute(sa.select(Tag.name, Tag.id).where(Tag.name.in_(names)))
    return {name: tag_id for name, tag_id in rows}


def detach(*, session: Session, image_id: int, names: list[str]) -> None:
    if not names:
        return
    tag_ids = sa.select(Tag.id).where(Tag.name.in_(names)).scalar_subquery()
    session.execute(
        sa.delete(ImageTag).where(ImageTag.image_id == image_id, ImageTag.tag_id.in_(tag_ids))
    )


def tags_of(*, session: Session, image_ids: Sequence[int]) -> dict[int, list[str]]:
    """Tag names of each image, sorted by name."""
    out: dict[int, list[str]] = {i: [] for i in image_ids}
    for part in chunks(list(out)):
        rows = session.execute(
            sa.select(ImageTag.image_id, Tag.name)
            .join(Tag, Tag.id == ImageTag.tag_id)
            .where(ImageTag.image_id.in_(part))
            .order_by(ImageTag.image_id, Tag.name)
        )
        for image_id, name in rows:
            out[image_id].append(name)
    return out


def tag_counts(*, session: Session) -> list[tuple[str, int]]:
    """Every tag with the number of images carrying it, most used first."""
    count = sa.func.count(ImageTag.image_id)
    rows = session.execute(
        sa.select(Tag.name, count)
        .join(ImageTag, ImageTag.tag_id == Tag.id, isouter=True)
        .group_by(Tag.id, Tag.name)
        .order_by(count.desc(), Tag.name)
    )
    return [(name, int(n)) for name, n in rows]


def rarest_first(*, session: Session, tag_ids: list[int], cap: int = RAREST_CAP) -> list[int]:
    """`tag_ids` with the one carried by the fewest images first (the others keep their
    order). Counts stop at `cap` rows each (index range reads: ~20 ms for a tag on 10% and
    one on 0.1% at 10M rows); past it a tag is common enough that leading with it costs a
    page about the same as leading with another such tag."""
    if len(tag_ids) < 2:
        return list(tag_ids)

    def size(tag_id: int) -> int:
        capped = (sa.select(sa.literal(1)).select_from(ImageTag)
                  .where(ImageTag.tag_id == tag_id).limit(cap).subquery())
        return int(session.execute(
            sa.select(sa.func.count()).select_from(capped)).scalar_one())

    lead = min(tag_ids, key=size)
    return [lead] + [t for t in tag_ids if t != lead]


def carries_tag(tag_id: int) -> sa.ColumnElement[bool]:
    """A condition on `Image`: the image carries the tag (one probe of the primary key).
    Its own alias of image_tags, as the listing may walk image_tags already."""
    probe = aliased(ImageTag)
    return sa.exists().where(probe.image_id == Image.id, probe.tag_id == tag_id)


def having_all_tags(names: list[str]) -> sa.Select[Any]:
    """SELECT image_id of images carrying every tag in `names` (normalised, non-empty)."""
    return (
        sa.select(ImageTag.image_id)
        .join(Tag, Tag.id == ImageTag.tag_id)
        .where(Tag.name.in_(names))
        .group_by(ImageTag.image_id)
        .having(sa.func.count(sa.distinct(ImageTag.tag_id)) == len(names))
    )
