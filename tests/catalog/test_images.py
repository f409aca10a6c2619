"""Image rows on both backends: idempotent create, status graph, queries, tags."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from services.catalog.db.engine import Database
from services.catalog.db.models import Image, ImageTag
from services.catalog.repository import images, tags
from services.catalog.repository.errors import (
    ImageNotFound,
    InvalidCursor,
    InvalidTag,
    InvalidTransition,
)
from services.catalog.repository.images import ImageRecord
from services.catalog.repository.session import read, transact
from services.common.errors import StatusConflict
from services.common.vocabulary import IMAGE_EDGES as EDGES
from services.common.vocabulary import ImageStatus
from tests.catalog.conftest import sha

MakeImage = Callable[..., ImageRecord]


def _move(db: Database, image_id: int, *path: str) -> ImageRecord:
    record = read(db, images.get_image, image_id=image_id)
    for to in path:
        record = transact(db, images.transition, image_id=image_id, from_=record.status, to=to)
    return record


def test_create_returns_pending_row_with_normalised_tags(db: Database) -> None:
    record, created = transact(
        db, images.create_image, sha256=sha(1), original_filename="Cat photo.JPG",
        storage_key="00/x.jpg", mime="image/jpeg", width=3, height=2, bytes=99,
        uploader="alice", tags=[" Cat ", "cat", "outdoor"],
    )
    assert created is True
    assert record.status == "pending"
    assert record.tags == ["cat", "outdoor"]
    assert (record.width, record.height, record.bytes, record.uploader) == (3, 2, 99, "alice")
    assert record.created_at.tzinfo is UTC
    assert record.created_at == record.updated_at


def test_same_sha256_gives_same_row_and_merges_tags(db: Database, make_image: MakeImage) -> None:
    first = make_image(sha256=sha(7), tags=["a"])
    again, created = transact(
        db, images.create_image, sha256=sha(7), original_filename="other-name.png",
        storage_key="x", mime="image/png", width=1, height=1, bytes=1, tags=["b"],
    )
    assert created is False
    assert again.id == first.id
    assert again.original_filename == first.original_filename
    assert again.tags == ["a", "b"]
    with db.read() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(Image)).scalar_one() == 1


@pytest.mark.parametrize("bad", ["", "   ", "a,b", "x" * 65, "tab\there"])
def test_invalid_tag_is_refused_without_creating_the_row(db: Database, bad: str) -> None:
    with pytest.raises(InvalidTag) as info:
        transact(db, images.create_image, sha256=sha(1), original_filename="a.jpg",
                 storage_key="k", mime="image/jpeg", width=1, height=1, bytes=1, tags=[bad])
    assert info.value.code == "invalid_tag"
    assert read(db, images.status_counts)["pending"] == 0


def test_only_graph_edges_are_allowed(db: Database, make_image: MakeImage) -> None:
    paths = {"pending": [], "indexed": ["indexed"], "failed": ["failed"],
             "deleting": ["deleting"], "removed": ["deleting", "removed"]}
    allowed = set()
    for source in ImageStatus:
        for target in ImageStatus:
            record = _move(db, make_image().id, *paths[source])
            assert record.status == source
            if target in EDGES[source]:
                moved = transact(db, images.transition, image_id=record.id, from_=source,
                                 to=target)
                assert moved.status == target
                assert moved.updated_at >= record.updated_at
                allowed.add((source, target))
                continue
            with pytest.raises(InvalidTransition) as info:
                transact(db, images.transition, image_id=record.id, from_=source, to=target)
            assert info.value.code == "invalid_transition"
            assert read(db, images.get_image, image_id=record.id).status == source
    assert allowed == {("pending", "indexed"), ("pending", "failed"), ("pending", "deleting"),
                       ("indexed", "deleting"), ("failed", "pending"), ("failed", "deleting"),
                       ("deleting", "removed")}


def test_transition_is_compare_and_set(db: Database, make_image: MakeImage) -> None:
    image = make_image()
    transact(db, images.transition, image_id=image.id, from_="pending", to="indexed",
             model_id="dinov2_vitb14:abc", thumbnail_key="th/key.webp")
    with pytest.raises(StatusConflict) as info:
        transact(db, images.transition, image_id=image.id, from_="pending", to="failed",
                 error="late")
    assert info.value.code == "status_conflict"
    assert info.value.detail == {"id": image.id, "current": "indexed", "expected": "pending"}
    record = read(db, images.get_image, image_id=image.id)
    assert (record.status, record.model_id, record.thumbnail_key, record.error) == (
        "indexed", "dinov2_vitb14:abc", "th/key.webp", None)


def test_failed_keeps_error_and_retry_clears_it(db: Database, make_image: MakeImage) -> None:
    image = make_image()
    failed = transact(db, images.transition, image_id=image.id, from_="pending", to="failed",
                      error="embedding unavailable")
    assert failed.error == "embedding unavailable"
    retried = transact(db, images.transition, image_id=image.id, from_="failed", to="pending")
    assert retried.error is None


def test_transition_of_missing_image_is_not_found(db: Database) -> None:
    with pytest.raises(ImageNotFound) as info:
        transact(db, images.transition, image_id=424242, from_="pending", to="indexed")
    assert info.value.code == "image_not_found"


def test_near_duplicate_link_is_cleared_when_the_original_goes(db: Database,
                                                               make_image: MakeImage) -> None:
    original, copy = make_image(), make_image()
    linked = transact(db, images.transition, image_id=copy.id, from_="pending", to="indexed",
                      near_duplicate_of=original.id)
    assert linked.near_duplicate_of == original.id
    _move(db, original.id, "deleting")
    transact(db, images.delete_image, image_id=original.id)
    assert read(db, images.get_image, image_id=copy.id).near_duplicate_of is None


def test_bulk_transition_reports_changed_and_unchanged(db: Database,
                                                       make_image: MakeImage) -> None:
    a, b, c = make_image(), make_image(), make_image()
    _move(db, b.id, "indexed")
    _move(db, c.id, "deleting")
    changed, unchanged = transact(db, images.bulk_transition, ids=[c.id, a.id, 999, b.id],
                                  from_=["pending", "indexed", "failed"], to="deleting")
    assert changed == [a.id, b.id]
    assert unchanged == [c.id, 999]
    assert read(db, images.status_counts)["deleting"] == 3
    with pytest.raises(InvalidTransition):
        transact(db, images.bulk_transition, ids=[a.id], from_=["indexed"], to="pending")


def test_delete_only_from_deleting_or_removed(db: Database, make_image: MakeImage) -> None:
    image = make_image(tags=["x"])
    with pytest.raises(StatusConflict) as info:
        transact(db, images.delete_image, image_id=image.id)
    assert info.value.detail["current"] == "pending"
    _move(db, image.id, "deleting", "removed")
    transact(db, images.delete_image, image_id=image.id)
    with pytest.raises(ImageNotFound):
        read(db, images.get_image, image_id=image.id)
    with pytest.raises(ImageNotFound):
        transact(db, images.delete_image, image_id=image.id)
    # The image_tags rows went with the image (FK cascade); the tag itself stays.
    assert read(db, tags.tag_counts) == [("x", 0)]


def test_lookup_keeps_the_order_given_and_filters_status(db: Database,
                                                         make_image: MakeImage) -> None:
    a, b, c = make_image(), make_image(), make_image()
    _move(db, a.id, "indexed")
    _move(db, c.id, "indexed")
    got = read(db, images.lookup, ids=[c.id, 12345, b.id, a.id, c.id])
    assert [r.id for r in got] == [c.id, b.id, a.id]
    indexed = read(db, images.lookup, ids=[c.id, b.id, a.id], status="indexed")
    assert [r.id for r in indexed] == [c.id, a.id]
    assert read(db, images.lookup, ids=[]) == []


def test_lookup_of_many_ids_crosses_statement_chunks(db: Database,
                                                     make_image: MakeImage) -> None:
    made = [make_image(tags=["t"]).id for _ in range(3)]
    ids = list(range(10_000, 11_200)) + made[::-1]
    got = read(db, images.lookup, ids=ids)
    assert [r.id for r in got] == made[::-1]
    assert all(r.tags == ["t"] for r in got)


def test_list_filters_and_pages(db: Database, make_image: MakeImage) -> None:
    rows = [make_image(uploader="alice" if i % 2 else "bob", tags=["even"] if i % 2 == 0
                       else ["odd"]) for i in range(6)]
    _move(db, rows[0].id, "indexed")
    _move(db, rows[1].id, "indexed")
    page, total = read(db, images.list_images, limit=4, offset=0)
    assert total == 6
    assert [r.id for r in page] == [r.id for r in rows[::-1][:4]]
    rest, _ = read(db, images.list_images, limit=4, offset=4)
    assert [r.id for r in rest] == [rows[1].id, rows[0].id]
    oldest, _ = read(db, images.list_images, limit=2, descending=False)
    assert [r.id for r in oldest] == [rows[0].id, rows[1].id]

    by_status, n = read(db, images.list_images, statuses=["indexed"])
    assert n == 2 and {r.id for r in by_status} == {rows[0].id, rows[1].id}
    _, n = read(db, images.list_images, statuses=["indexed", "pending"])
    assert n == 6
    by_tag, n = read(db, images.list_images, tags=["Even"])
    assert n == 3 and all(r.tags == ["even"] for r in by_tag)
    _, n = read(db, images.list_images, tags=["even", "odd"])
    assert n == 0
    by_uploader, n = read(db, images.list_images, uploader="alice")
    assert n == 3 and {r.uploader for r in by_uploader} == {"alice"}
    _, n = read(db, images.list_images, statuses=["indexed"], uploader="bob", tags=["even"])
    assert n == 1


def _set_created_at(db: Database, stamps: dict[int, datetime]) -> None:
    """Rewrite images' created_at, and the copy their tag rows keep (the catalog itself never
    changes a created_at)."""
    with db.write() as session:
        for image_id, stamp in stamps.items():
            session.execute(sa.update(Image).where(Image.id == image_id)
                            .values(created_at=stamp))
            session.execute(sa.update(ImageTag).where(ImageTag.image_id == image_id)
                            .values(created_at=stamp))
        session.commit()


def _walk(db: Database, limit: int, **filters: object) -> list[int]:
    """Ids of every page of a keyset walk, in order."""
    out: list[int] = []
    after = None
    while True:
        page, _ = read(db, images.list_images, limit=limit, after=after, with_total=False,
                       **filters)
        out += [r.id for r in page]
        if len(page) < limit:
            return out
        after = images.decode_cursor(images.encode_cursor(page[-1]))


def test_tag_filtered_keyset_walk_returns_exactly_the_tagged_rows_in_order(
        db: Database, make_image: MakeImage) -> None:
    """Rare and common tags, alone, together and with a status: each walk (pages of 3) is
    the rows carrying the tags, ordered by (created_at, id), checked against every row."""
    made = [make_image(tags=(["common"] if i % 2 == 0 else [])
                       + (["rare"] if i % 9 == 4 else [])) for i in range(40)]
    base = datetime(2026, 1, 1, tzinfo=UTC)
    # Timestamps out of id order, with ties (the id breaks them).
    _set_created_at(db, {r.id: base + timedelta(minutes=(i * 7) % 13) for i, r in
                         enumerate(made)})
    for r in made[::5]:
        _move(db, r.id, "indexed")
    everything, _ = read(db, images.list_images, limit=500)
    for filters in ({"tags": ["rare"]}, {"tags": ["common"]}, {"tags": ["common", "rare"]},
                    {"tags": ["RARE", "common"]}, {"tags": ["common"], "statuses": ["indexed"]},
                    {"tags": ["nobody"]}):
        wanted = [t.lower() for t in filters["tags"]]
        status = filters.get("statuses", [None])[0]
        for descending in (True, False):
            expected = sorted(
                (r for r in everything if set(wanted) <= set(r.tags)
                 and status in (None, r.status)),
                key=lambda r: (r.created_at, r.id), reverse=descending)
            got = _walk(db, 3, descending=descending, **filters)
            assert got == [r.id for r in expected], (filters, descending)
        _, total = read(db, images.list_images, limit=1, **filters)
        assert total == len(expected)
    assert 0 < len(_walk(db, 3, tags=["rare"])) < len(_walk(db, 3, tags=["common"]))


def test_keyset_pages_match_offset_pages_with_tied_timestamps(db: Database,
                                                                make_image: MakeImage) -> None:
    rows = [make_image(tags=["even"] if i % 2 == 0 else []) for i in range(7)]
    same = datetime(2026, 1, 1, tzinfo=UTC)
    _set_created_at(db, {r.id: same for r in rows[2:6]})  # ties: the id orders them
    for descending in (True, False):
        for filters in ({}, {"tags": ["even"]}, {"statuses": ["pending"]}):
            everything, _ = read(db, images.list_images, limit=50, descending=descending,
                                 **filters)
            paged: list[int] = []
            after = None
            while True:
                page, total = read(db, images.list_images, limit=2, after=after,
                                   descending=descending, with_total=False, **filters)
                assert total is None
                paged += [r.id for r in page]
                if len(page) < 2:
                    break
                after = images.decode_cursor(images.encode_cursor(page[-1]))
            assert paged == [r.id for r in everything]
    with pytest.raises(InvalidCursor):
        images.decode_cursor("not-a-cursor")


def test_list_by_date_range(db: Database, make_image: MakeImage) -> None:
    rows = [make_image() for _ in range(3)]
    base = datetime(2026, 1, 1, tzinfo=UTC)
    with db.write() as session:
        for day, row in enumerate(rows):
            session.execute(sa.update(Image).where(Image.id == row.id)
                            .values(created_at=base + timedelta(days=day)))
        session.commit()
    got, n = read(db, images.list_images, created_from=base + timedelta(days=1))
    assert n == 2 and {r.id for r in got} == {rows[1].id, rows[2].id}
    got, n = read(db, images.list_images, created_to=base + timedelta(days=1))
    assert n == 1 and got[0].id == rows[0].id
    assert got[0].created_at == base
    # A naive datetime is UTC; another offset is converted.
    _, n = read(db, images.list_images, created_from=datetime(2026, 1, 2),
                created_to=datetime(2026, 1, 3, 1, tzinfo=timezone(timedelta(hours=2))))
    assert n == 1


def test_ids_with_tags_needs_every_tag_and_status(db: Database, make_image: MakeImage) -> None:
    a = make_image(tags=["cat", "indoor"])
    b = make_image(tags=["cat"])
    c = make_image(tags=["cat", "indoor"])
    for row in (a, b):
        _move(db, row.id, "indexed")
    assert read(db, images.ids_with_tags, tags=["cat"]) == [a.id, b.id]
    assert read(db, images.ids_with_tags, tags=["CAT", "indoor"]) == [a.id]
    assert read(db, images.ids_with_tags, tags=["cat", "indoor"], status=None) == [a.id, c.id]
    assert read(db, images.ids_with_tags, tags=["nothing"]) == []


def test_add_and_remove_tags(db: Database, make_image: MakeImage) -> None:
    image = make_image(tags=["a"])
    record = transact(db, images.add_tags, image_id=image.id, tags=["b", "A", "c"])
    assert record.tags == ["a", "b", "c"]
    record = transact(db, images.remove_tags, image_id=image.id, tags=["a", "zzz"])
    assert record.tags == ["b", "c"]
    assert read(db, tags.tag_counts) == [("b", 1), ("c", 1), ("a", 0)]
    with pytest.raises(ImageNotFound):
        transact(db, images.add_tags, image_id=999, tags=["b"])


def test_status_counts_and_stale_rows(db: Database, make_image: MakeImage) -> None:
    old, fresh, done = make_image(), make_image(), make_image()
    _move(db, done.id, "indexed")
    with db.write() as session:
        session.execute(sa.update(Image).where(Image.id == old.id)
                        .values(updated_at=datetime.now(UTC) - timedelta(hours=1)))
        session.commit()
    counts = read(db, images.status_counts)
    assert counts == {"pending": 2, "indexed": 1, "failed": 0, "deleting": 0, "removed": 0}
    stale = read(db, images.stale, status="pending", older_than_s=900, limit=10)
    assert [r.id for r in stale] == [old.id]
    both = read(db, images.stale, status="pending", older_than_s=0, limit=10)
    assert [r.id for r in both] == [old.id, fresh.id]
    assert read(db, images.stale, status="pending", older_than_s=0, limit=1)[0].id == old.id
