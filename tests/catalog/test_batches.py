"""Batch creates, batch transitions and batch item outcomes: the repository on each backend
(racing threads included), then the routes through a real catalog process on MariaDB
(limits, bad input that changes nothing, error codes)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from services.catalog.db.engine import Database
from services.catalog.db.models import Image
from services.catalog.repository import counts, images, jobs, tags
from services.catalog.repository.errors import (
    DuplicateIds,
    InvalidTag,
    InvalidTransition,
    JobNotFound,
    TooManyItems,
)
from services.catalog.repository.images import ImageRecord, Move, Moved
from services.catalog.repository.session import read, transact
from tests.catalog.conftest import catalog_process, create_over_http, sha
from tests.catalog.test_concurrency import _race


def _status(db: Database, image_id: int) -> str:
    return read(db, images.get_image, image_id=image_id).status


def _counts_match_rows(db: Database) -> None:
    kept = read(db, counts.read)
    with db.read() as session:
        rows = {status: int(n) for status, n in session.execute(
            sa.select(Image.status, sa.func.count()).group_by(Image.status))}
    assert kept == {s: int(rows.get(s, 0)) for s in kept}


def test_batch_moves_the_rows_in_from_each_with_its_fields(
        db: Database, make_image: Callable[..., ImageRecord]) -> None:
    p1, p2, p3 = make_image(), make_image(), make_image()
    indexed = make_image()
    transact(db, images.transition, image_id=indexed.id, from_="pending", to="indexed",
             model_id="other:1", thumbnail_key="th/other")
    deleting = make_image()
    transact(db, images.transition, image_id=deleting.id, from_="pending", to="deleting")
    moves = [Move(id=p2.id, model_id="m:1", thumbnail_key="th/2", near_duplicate_of=p1.id),
             Move(id=indexed.id, model_id="m:1", thumbnail_key="th/x"),
             Move(id=999_999, model_id="m:1"),
             Move(id=p1.id, model_id="m:1", thumbnail_key="th/1", near_duplicate_of=p1.id),
             Move(id=deleting.id, model_id="m:1", thumbnail_key="th/y"),
             Move(id=p3.id, model_id="m:1")]
    result = transact(db, images.transition_batch, from_="pending", to="indexed", moves=moves)
    assert result == [Moved(p2.id, True, "indexed"), Moved(indexed.id, False, "indexed"),
                      Moved(999_999, False, None), Moved(p1.id, True, "indexed"),
                      Moved(deleting.id, False, "deleting"), Moved(p3.id, True, "indexed")]
    rows = {r.id: r for r in read(db, images.lookup, ids=[p1.id, p2.id, p3.id, indexed.id,
                                                          deleting.id])}
    assert (rows[p1.id].thumbnail_key, rows[p1.id].near_duplicate_of) == ("th/1", None)
    assert (rows[p2.id].thumbnail_key, rows[p2.id].near_duplicate_of) == ("th/2", p1.id)
    assert (rows[p3.id].thumbnail_key, rows[p3.id].model_id) == (None, "m:1")
    assert all(rows[i].model_id == "m:1" for i in (p1.id, p2.id, p3.id))
    assert all(rows[i].updated_at >= p1.updated_at for i in (p1.id, p2.id, p3.id))
    # Rows that were not in `from` keep everything.
    assert (rows[indexed.id].model_id, rows[indexed.id].thumbnail_key) == ("other:1", "th/other")
    assert (rows[deleting.id].status, rows[deleting.id].thumbnail_key) == ("deleting", None)
    _counts_match_rows(db)
    again = transact(db, images.transition_batch, from_="pending", to="indexed", moves=moves)
    assert not any(m.changed for m in again)
    _counts_match_rows(db)


def test_batch_to_failed_keeps_each_message(db: Database,
                                            make_image: Callable[..., ImageRecord]) -> None:
    a, b = make_image(), make_image()
    transact(db, images.transition_batch, from_="pending", to="failed",
             moves=[Move(id=a.id, error="not_an_image: a"), Move(id=b.id)])
    assert read(db, images.get_image, image_id=a.id).error == "not_an_image: a"
    assert read(db, images.get_image, image_id=b.id).error == "unknown error"
    transact(db, images.transition_batch, from_="failed", to="pending", moves=[Move(id=a.id)])
    again = read(db, images.get_image, image_id=a.id)
    assert (again.status, again.error) == ("pending", None)
    _counts_match_rows(db)


def test_bad_batches_change_nothing(db: Database,
                                   make_image: Callable[..., ImageRecord]) -> None:
    a, b = make_image(), make_image()
    with pytest.raises(InvalidTransition) as edge:
        transact(db, images.transition_batch, from_="pending", to="removed",
                 moves=[Move(id=a.id)])
    assert edge.value.code == "invalid_transition" and edge.value.status == 422
    with pytest.raises(DuplicateIds) as twice:
        transact(db, images.transition_batch, from_="pending", to="indexed",
                 moves=[Move(id=a.id), Move(id=b.id), Move(id=a.id, model_id="m:2")])
    assert twice.value.code == "duplicate_ids" and twice.value.detail == {"ids": [a.id]}
    assert (_status(db, a.id), _status(db, b.id)) == ("pending", "pending")
    _counts_match_rows(db)


def test_racing_batches_move_each_row_once(db: Database,
                                           make_image: Callable[..., ImageRecord]) -> None:
    """Batches over overlapping rows, to indexed and to deleting, in 8 threads: every row
    is moved by exactly one of them and the others see the status it moved to."""
    rows = [make_image().id for _ in range(24)]

    def batch(i: int) -> list[Moved]:
        mine = rows[i * 2:] + rows[:i * 2]  # every thread a different order
        to = "indexed" if i % 2 else "deleting"
        return transact(db, images.transition_batch, from_="pending", to=to,
                        moves=[Move(id=r, model_id="m:1") for r in mine])

    results = _race(8, batch)
    assert not [r for r in results if isinstance(r, BaseException)], results
    winners: dict[int, list[str]] = {r: [] for r in rows}
    for outcome in results:
        assert not isinstance(outcome, BaseException)
        for moved in outcome:
            if moved.changed:
                winners[moved.id].append(str(moved.status))
    assert all(len(w) == 1 for w in winners.values()), winners
    final = {r.id: r.status for r in read(db, images.lookup, ids=rows)}
    assert final == {r: w[0] for r, w in winners.items()}
    for outcome in results:
        assert not isinstance(outcome, BaseException)
        assert all(m.status == final[m.id] for m in outcome)
    _counts_match_rows(db)


def _job(db: Database, ids: list[int]) -> int:
    job_id = transact(db, jobs.create_job, kind="ingest").id
    transact(db, jobs.register_items, job_id=job_id, image_ids=ids, max_items=100)
    return job_id


def test_outcomes_of_a_batch_count_once_and_replace_earlier_ones(db: Database) -> None:
    job_id = _job(db, [1, 2, 3, 4])
    job = transact(db, jobs.record_items, job_id=job_id, max_items=10, outcomes=[
        (1, "done", "dropped: a done outcome keeps no message"), (2, "failed", "bad file"),
        (3, "skipped", "image is deleting"), (7, "done", None)])
    assert (job.status, job.total, job.done, job.failed, job.skipped) == ("running", 5, 2, 1, 1)
    assert job.items_failed == [{"image_id": 2, "error": "bad file"}]
    assert job.items_skipped == [{"image_id": 3, "reason": "image is deleting"}]
    same = transact(db, jobs.record_items, job_id=job_id, max_items=10, outcomes=[
        (1, "done", None), (2, "failed", "bad file")])
    assert (same.total, same.done, same.failed, same.skipped) == (5, 2, 1, 1)
    later = transact(db, jobs.record_items, job_id=job_id, max_items=10, outcomes=[
        (2, "done", None), (4, "failed", "gone"), (3, "skipped", "image is removed")])
    assert (later.total, later.done, later.failed, later.skipped) == (5, 3, 1, 1)
    assert later.items_failed == [{"image_id": 4, "error": "gone"}]
    assert later.items_skipped == [{"image_id": 3, "reason": "image is removed"}]
    # One outcome alone goes the same way.
    one = transact(db, jobs.record_item, job_id=job_id, image_id=4, state="done")
    assert (one.done, one.failed) == (4, 0)


def test_bad_outcome_batches_record_nothing(db: Database) -> None:
    job_id = _job(db, [1, 2, 3])
    with pytest.raises(DuplicateIds) as twice:
        transact(db, jobs.record_items, job_id=job_id, max_items=10,
                 outcomes=[(1, "done", None), (2, "done", None), (1, "failed", "x")])
    assert twice.value.detail == {"ids": [1]}
    with pytest.raises(TooManyItems) as many:
        transact(db, jobs.record_items, job_id=job_id, max_items=2,
                 outcomes=[(1, "done", None), (2, "done", None), (3, "done", None)])
    assert many.value.code == "too_many_items"
    with pytest.raises(JobNotFound):
        transact(db, jobs.record_items, job_id=job_id + 100, max_items=10,
                 outcomes=[(1, "done", None)])
    job = read(db, jobs.get_job, job_id=job_id)
    assert (job.done, job.failed, job.skipped, job.total) == (0, 0, 0, 3)


def test_racing_outcome_batches_keep_counts_equal_to_items(db: Database) -> None:
    ids = list(range(1, 41))
    job_id = _job(db, ids)

    def report(i: int) -> object:
        # The first three are reported by every thread.
        part = list(dict.fromkeys(ids[i * 5:(i + 1) * 5] + ids[:3]))
        return transact(db, jobs.record_items, job_id=job_id, max_items=100,
                        outcomes=[(r, "failed" if r % 4 == 0 else "done",
                                   "bad" if r % 4 == 0 else None) for r in part])

    results = _race(8, report)
    assert not [r for r in results if isinstance(r, BaseException)], results
    job = read(db, jobs.get_job, job_id=job_id)
    assert (job.total, job.done, job.failed, job.skipped) == (40, 30, 10, 0)


def _new(n: int, **fields: Any) -> images.NewImage:
    return images.NewImage(**{"sha256": sha(n), "original_filename": f"{n}.jpg",
                              "storage_key": f"k/{n}", "mime": "image/jpeg", "width": 2,
                              "height": 2, "bytes": 10, **fields})


def test_batch_create_answers_in_order_and_finds_existing_and_repeated_rows(
        db: Database, make_image: Callable[..., ImageRecord]) -> None:
    old = make_image(sha256=sha(2), tags=["old"])
    transact(db, images.transition, image_id=old.id, from_="pending", to="indexed",
             model_id="m")
    given = [_new(1, tags=["A"]), _new(2, tags=["b"]), _new(3), _new(1, tags=["c"]),
             _new(4, uploader="bob")]
    results = transact(db, images.create_images, images=given)
    assert [record.sha256 for record, _ in results] == [image.sha256 for image in given]
    assert [created for _, created in results] == [True, False, True, False, True]
    first, existing, third, again, fourth = (record for record, _ in results)
    assert again.id == first.id and existing.id == old.id
    assert existing.status == "indexed" and existing.tags == ["b", "old"]
    assert first.status == "pending" and first.tags == ["a", "c"]
    assert (fourth.uploader, third.tags) == ("bob", [])
    assert read(db, images.status_counts)["pending"] == 3
    assert read(db, images.get_image, image_id=first.id).tags == ["a", "c"]


def test_batch_create_of_more_rows_than_a_statement_chunk(db: Database) -> None:
    n = tags.CHUNK + 37
    results = transact(db, images.create_images,
                       images=[_new(k, tags=[f"t{k % 3}", "all"]) for k in range(n)])
    assert all(created for _, created in results)
    assert len({record.id for record, _ in results}) == n
    again = transact(db, images.create_images, images=[_new(k) for k in reversed(range(n))])
    assert [record.id for record, _ in again] == [record.id for record, _ in reversed(results)]
    assert not any(created for _, created in again)
    assert read(db, images.status_counts)["pending"] == n
    assert len(read(db, images.ids_with_tags, tags=["all"], status="pending")) == n


def test_batch_create_with_an_invalid_tag_changes_nothing(db: Database) -> None:
    with pytest.raises(InvalidTag):
        transact(db, images.create_images,
                 images=[_new(1, tags=["fine"]), _new(2, tags=["a,b"])])
    assert read(db, images.status_counts)["pending"] == 0
    with db.read() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(Image)).scalar_one() == 0


def test_overlapping_batches_at_the_same_moment_give_one_row_per_sha256(db: Database) -> None:
    """Batches of new images sharing most of their sha256s, each in its own order: one row
    each, created by exactly one batch, every tag given attached, the pending count exact."""
    for round_ in range(3):
        digests = [sha(2000 + 20 * round_ + k) for k in range(12)]

        def create(i: int, digests: list[str] = digests) -> list[tuple[ImageRecord, bool]]:
            mine = digests[i % 3:] if i % 2 else list(reversed(digests[:10 + i % 3]))
            return transact(db, images.create_images, images=[
                images.NewImage(sha256=d, original_filename=f"{i}.jpg", storage_key=f"k/{d}",
                                mime="image/jpeg", width=4, height=4, bytes=10,
                                tags=[f"t{i}"]) for d in mine])

        results = _race(8, create)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert errors == []
        outcomes = [pair for r in results if not isinstance(r, BaseException) for pair in r]
        ids: dict[str, set[int]] = {}
        for record, _ in outcomes:
            ids.setdefault(record.sha256, set()).add(record.id)
        assert sorted(ids) == sorted(digests)
        assert all(len(found) == 1 for found in ids.values())
        created = [record.sha256 for record, was_created in outcomes if was_created]
        assert sorted(created) == sorted(digests)
        final = read(db, images.lookup, ids=[next(iter(v)) for v in ids.values()])
        for record in final:
            givers = {f"t{i}" for i in range(8)
                      if record.sha256 in (digests[i % 3:] if i % 2 else digests[:10 + i % 3])}
            assert set(record.tags) == givers
        assert read(db, images.status_counts)["pending"] == 12 * (round_ + 1)


# Through a real catalog process on MariaDB: the routes, their limits and error codes.

@pytest.fixture
def catalog(tmp_path: Path, mysql_database_url: str) -> Iterator[httpx.Client]:
    with catalog_process(tmp_path, mysql_database_url,
                         IMGSEARCH_CATALOG_MAX_LOOKUP_IDS="4") as client:
        yield client


def _create(client: httpx.Client, n: int) -> int:
    return create_over_http(client, 20_000 + n)


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    code: str = response.json()["error"]["code"]
    return code


@pytest.mark.integration
@pytest.mark.slow
def test_batch_routes_over_http(catalog: httpx.Client) -> None:
    a, b, c = (_create(catalog, n) for n in range(3))
    response = catalog.post(f"/v1/images/{c}/transition", json={"from": "pending",
                                                                "to": "deleting"})
    assert response.status_code == 200, response.text
    response = catalog.post("/v1/images/transitions", json={
        "from": "pending", "to": "indexed", "items": [
            {"id": a, "model_id": "m:1", "thumbnail_key": "th/a"},
            {"id": c, "model_id": "m:1"}, {"id": 999_999},
            {"id": b, "model_id": "m:1", "near_duplicate_of": a}]})
    assert response.status_code == 200, response.text
    assert response.json() == {"results": [
        {"id": a, "changed": True, "status": "indexed"},
        {"id": c, "changed": False, "status": "deleting"},
        {"id": 999_999, "changed": False, "status": None},
        {"id": b, "changed": True, "status": "indexed"}]}
    rows = {i: catalog.get(f"/v1/images/{i}").json() for i in (a, b, c)}
    assert (rows[a]["thumbnail_key"], rows[a]["model_id"]) == ("th/a", "m:1")
    assert rows[b]["near_duplicate_of"] == a and rows[c]["model_id"] is None
    stats = catalog.get("/v1/stats").json()["images"]
    assert (stats["indexed"], stats["deleting"], stats["pending"]) == (2, 1, 0)

    d = _create(catalog, 3)
    bad_batches = [
        ({"from": "pending", "to": "removed", "items": [{"id": d}]}, "invalid_transition"),
        ({"from": "pending", "to": "failed", "items": [{"id": d}, {"id": d}]},
         "duplicate_ids"),
        ({"from": "pending", "to": "failed", "items": [{"id": i} for i in (d, 5, 6, 7, 8)]},
         "invalid_request"),
        ({"from": "pending", "to": "failed", "items": []}, "invalid_request"),
        ({"from": "pending", "to": "gone", "items": [{"id": d}]}, "invalid_request"),
        ({"from": "pending", "to": "failed", "items": [{"id": d, "colour": "red"}]},
         "invalid_request"),
    ]
    for body, code in bad_batches:
        assert _error(catalog.post("/v1/images/transitions", json=body), 422) == code, body
    assert catalog.get(f"/v1/images/{d}").json()["status"] == "pending"
    no_token = httpx.post(str(catalog.base_url) + "/v1/images/transitions",
                          json={"from": "pending", "to": "failed", "items": [{"id": d}]})
    assert _error(no_token, 401) == "invalid_internal_token"
    assert catalog.get(f"/v1/images/{d}").json()["status"] == "pending"

    job = catalog.post("/v1/jobs", json={"kind": "ingest", "total": 3}).json()["id"]
    response = catalog.post(f"/v1/jobs/{job}/outcomes", json={"items": [
        {"image_id": a, "state": "done"}, {"image_id": c, "state": "skipped",
                                           "error": "image is deleting"},
        {"image_id": d, "state": "failed", "error": "bad"}]})
    assert response.status_code == 200, response.text
    got = response.json()
    assert (got["status"], got["done"], got["failed"], got["skipped"]) == ("running", 1, 1, 1)
    assert got["items_failed"] == [{"image_id": d, "error": "bad"}]
    bad_outcomes = [
        ({"items": [{"image_id": a, "state": "done"}, {"image_id": a, "state": "failed"}]},
         422, "duplicate_ids"),
        ({"items": [{"image_id": i, "state": "done"} for i in range(5)]}, 422,
         "too_many_items"),
        ({"items": []}, 422, "invalid_request"),
        ({"items": [{"image_id": a, "state": "pending"}]}, 422, "invalid_request"),
    ]
    for body, status, code in bad_outcomes:
        assert _error(catalog.post(f"/v1/jobs/{job}/outcomes", json=body), status) == code
    assert _error(catalog.post(f"/v1/jobs/{job + 100}/outcomes",
                               json={"items": [{"image_id": a, "state": "done"}]}),
                  404) == "job_not_found"
    after = catalog.get(f"/v1/jobs/{job}").json()
    assert (after["done"], after["failed"], after["skipped"]) == (1, 1, 1)


@pytest.mark.integration
@pytest.mark.slow
def test_batch_create_route_over_http(catalog: httpx.Client) -> None:
    def image(n: int, **extra: Any) -> dict[str, Any]:
        digest = sha(30_000 + n)
        return {"sha256": digest, "original_filename": f"{n}.jpg",
                "storage_key": f"{digest[:2]}/{digest}.jpg", "mime": "image/jpeg", "width": 8,
                "height": 6, "bytes": 100, **extra}

    existing = create_over_http(catalog, 30_000)
    response = catalog.post("/v1/images/batch", json={"images": [
        image(1, tags=["Sea"]), image(0, tags=["old"]), image(1), image(2, uploader="bob")]})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["created"] for r in results] == [True, False, False, True]
    assert results[1]["image"]["id"] == existing
    assert results[0]["image"]["id"] == results[2]["image"]["id"]
    assert [r["image"]["tags"] for r in results] == [["sea"], ["old"], ["sea"], []]
    assert results[3]["image"]["uploader"] == "bob"
    assert all(r["image"]["status"] == "pending" for r in results)
    assert catalog.get("/v1/stats").json()["images"]["pending"] == 3

    bad_batches = [
        ({"images": [image(n) for n in range(10, 15)]}, "invalid_request"),  # 5 > 4
        ({"images": []}, "invalid_request"),
        ({"images": [image(10), {**image(11), "sha256": "XYZ"}]}, "invalid_request"),
        ({"images": [image(10), {**image(11), "status": "indexed"}]}, "invalid_request"),
        ({"images": [image(10), image(11, tags=["a,b"])]}, "invalid_tag"),
    ]
    for body, code in bad_batches:
        assert _error(catalog.post("/v1/images/batch", json=body), 422) == code, body
    no_token = httpx.post(str(catalog.base_url) + "/v1/images/batch",
                          json={"images": [image(10)]})
    assert _error(no_token, 401) == "invalid_internal_token"
    assert catalog.get("/v1/stats").json()["total"] == 3
