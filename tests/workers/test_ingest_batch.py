"""An ingest batch talks to the catalog a constant number of times: one batch transition per
status step and one request for the job items, whatever the batch size; and it keeps the
guarantees of the per-image steps (rows changed meanwhile, failures, retries)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.common.http import TransientUpstream
from services.common.storage import resolve, thumbnail_key
from services.workers.tasks.context import TaskContext
from services.workers.tasks.ingest import ingest
from services.workers.tasks.progress import record_items
from services.workers.tasks.removal import delete
from tests.workers.fakes import FakeClients, make_context
from tests.workers.images import make_png
from tests.workers.test_tasks import stored


@pytest.fixture
def env(data_dir: Path) -> tuple[TaskContext, FakeClients, list[tuple[str, dict[str, Any]]]]:
    return make_context(data_dir)


def _no_single_calls(clients: FakeClients) -> None:
    """Make the per-image catalog calls fail the test if the ingest path still uses them."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a per-image catalog call on the batched path")

    clients.catalog.record_item = refuse  # type: ignore[method-assign]
    clients.catalog.transition = refuse  # type: ignore[method-assign]


def test_a_batch_costs_one_transition_and_one_outcome_request(env: Any) -> None:
    ctx, clients, _ = env
    ids = [stored(ctx, clients, make_png(800 + i)) for i in range(8)]
    job = clients.catalog.new_job("ingest")
    clients.catalog.register_items(job, ids)
    _no_single_calls(clients)
    assert ingest(ctx, job_id=job, image_ids=ids) == "indexed=8"
    assert clients.catalog.batch_calls == [("pending", "indexed", ids)]
    assert clients.catalog.record_calls == 1
    for i in ids:
        row = clients.catalog.images[i]
        assert row["status"] == "indexed" and row["model_id"] == clients.embedding.model
        assert row["thumbnail_key"] == thumbnail_key(row["sha256"])
    job_row = clients.catalog.get_job(job)
    assert (job_row["status"], job_row["done"], job_row["total"]) == ("succeeded", 8, 8)


def test_rows_changed_meanwhile_are_reported_not_changed(env: Any) -> None:
    """While the batch embeds, one row is marked deleting, another is indexed by another run
    (its own model id), a third is deleted for good. Only the untouched row is moved; the
    vectors of the rows on their way out are removed again; the other run's row keeps what
    it recorded."""
    ctx, clients, _ = env
    a, b, c, d = (stored(ctx, clients, make_png(820 + i)) for i in range(4))
    job = clients.catalog.new_job("ingest")
    clients.catalog.register_items(job, [a, b, c, d])
    upsert = clients.index.upsert

    def upsert_while_others_act(ids: list[int], vectors: Any, model: str,
                                tags: list[list[str]] | None = None) -> None:
        clients.catalog.transition(b, "pending", "deleting")
        clients.catalog.transition(c, "pending", "indexed", model_id="other:1")
        clients.catalog.transition(d, "pending", "deleting")
        delete(ctx, d)  # the delete task ran before our upsert landed: row, file, vector
        upsert(ids, vectors, model, tags)

    clients.index.upsert = upsert_while_others_act  # type: ignore[method-assign]
    assert ingest(ctx, job_id=job, image_ids=[a, b, c, d]) == "indexed=2, skipped=2"
    assert clients.catalog.batch_calls == [("pending", "indexed", [a, b, c, d])]
    assert clients.catalog.images[a]["status"] == "indexed"
    assert clients.catalog.images[b]["status"] == "deleting"  # left to its delete task
    assert clients.catalog.images[b]["model_id"] is None
    assert clients.catalog.images[c]["model_id"] == "other:1"
    assert d not in clients.catalog.images
    assert set(clients.index.vectors) == {a, c}
    items = clients.catalog.items[job]
    assert items[a] == ("done", None) and items[c] == ("done", None)
    assert items[b] == ("skipped", "image is deleting")
    assert items[d] == ("skipped", "image is absent")
    assert clients.catalog.get_job(job)["status"] == "succeeded"


def test_failed_images_of_a_batch_move_together_each_with_its_message(env: Any) -> None:
    ctx, clients, _ = env
    good = [make_png(840), make_png(841)]
    refused, missing = make_png(842), make_png(843)
    undecodable = b"\x89PNG\r\n\x1a\n" + b"\x01" * 100
    ids = [stored(ctx, clients, data) for data in (*good, refused, missing, undecodable)]
    resolve(ctx.images_dir, clients.catalog.images[ids[3]]["storage_key"]).unlink()
    clients.embedding.refused.add(refused)
    job = clients.catalog.new_job("ingest")
    clients.catalog.register_items(job, ids)
    _no_single_calls(clients)
    assert ingest(ctx, job_id=job, image_ids=ids) == "failed=3, indexed=2"
    calls = {(frm, to): moved for frm, to, moved in clients.catalog.batch_calls}
    assert len(calls) == len(clients.catalog.batch_calls) == 2
    assert calls[("pending", "indexed")] == ids[:2]
    assert sorted(calls[("pending", "failed")]) == sorted(ids[2:])
    errors = {i: clients.catalog.images[i]["error"] for i in ids[2:]}
    assert all(clients.catalog.images[i]["status"] == "failed" for i in ids[2:])
    assert errors[ids[2]].startswith("not_an_image")
    assert "missing" in errors[ids[3]]
    assert errors[ids[4]] and errors[ids[4]] not in (errors[ids[2]], errors[ids[3]])
    assert {i: clients.catalog.items[job][i] for i in ids[2:]} == {
        i: ("failed", errors[i]) for i in ids[2:]}
    assert clients.catalog.record_calls == 1
    job_row = clients.catalog.get_job(job)
    assert (job_row["status"], job_row["done"], job_row["failed"]) == ("succeeded", 2, 3)


def test_a_failed_row_deleted_meanwhile_is_left_deleting(env: Any) -> None:
    ctx, clients, _ = env
    good = stored(ctx, clients, make_png(850))
    bad = stored(ctx, clients, b"\x89PNG\r\n\x1a\n" + b"\x02" * 100)
    embed = clients.embedding.embed

    def embed_while_deleted(images: list[bytes]) -> Any:
        clients.catalog.transition(bad, "pending", "deleting")
        return embed(images)

    clients.embedding.embed = embed_while_deleted  # type: ignore[method-assign]
    assert ingest(ctx, image_ids=[good, bad]) == "failed=1, indexed=1"
    assert clients.catalog.images[bad]["status"] == "deleting"
    assert clients.catalog.images[good]["status"] == "indexed"


def test_a_transient_error_leaves_the_batch_pending_and_the_retry_fails_the_bad_image(
        env: Any) -> None:
    ctx, clients, _ = env
    good = stored(ctx, clients, make_png(860))
    bad = stored(ctx, clients, b"\x89PNG\r\n\x1a\n" + b"\x03" * 100)
    job = clients.catalog.new_job("ingest")
    clients.catalog.register_items(job, [good, bad])
    clients.index.down = True
    with pytest.raises(TransientUpstream):
        ingest(ctx, job_id=job, image_ids=[good, bad])
    assert {clients.catalog.images[i]["status"] for i in (good, bad)} == {"pending"}
    assert clients.catalog.get_job(job)["status"] == "running"
    clients.index.down = False
    assert ingest(ctx, job_id=job, image_ids=[good, bad]) == "failed=1, indexed=1"
    assert clients.catalog.images[bad]["status"] == "failed"
    job_row = clients.catalog.get_job(job)
    assert (job_row["status"], job_row["done"], job_row["failed"]) == ("succeeded", 1, 1)


def test_near_duplicates_skipped_together(env: Any) -> None:
    ctx, clients, _ = env
    first, second, third = make_png(870), make_png(871), make_png(872)
    clients.embedding.aliases[second] = first
    clients.embedding.aliases[third] = first
    ids = [stored(ctx, clients, d) for d in (first, second, third)]
    _no_single_calls(clients)
    assert ingest(ctx, image_ids=ids, on_near_duplicate="skip") == "indexed=1, skipped=2"
    assert clients.catalog.batch_calls == [("pending", "deleting", ids[1:]),
                                           ("deleting", "removed", ids[1:]),
                                           ("pending", "indexed", ids[:1])]
    assert [clients.catalog.images[i]["status"] for i in ids] == ["indexed", "removed",
                                                                  "removed"]
    assert all(not resolve(ctx.images_dir, clients.catalog.images[i]["storage_key"]).exists()
               for i in ids[1:])


def test_skipping_a_row_someone_else_moved_stops_the_batch(env: Any) -> None:
    """As a single transition's conflict did; the other skipped rows are finished first
    (removed, files gone, none left deleting), and the retry converges."""
    ctx, clients, _ = env
    first, second, third = make_png(880), make_png(881), make_png(882)
    clients.embedding.aliases[second] = first
    clients.embedding.aliases[third] = first
    a, b, c = (stored(ctx, clients, d) for d in (first, second, third))
    embed = clients.embedding.embed

    def embed_while_failed(images: list[bytes]) -> Any:
        clients.catalog.transition(b, "pending", "failed", error="by hand")
        return embed(images)

    clients.embedding.embed = embed_while_failed  # type: ignore[method-assign]
    with pytest.raises(Exception) as info:
        ingest(ctx, image_ids=[a, b, c], on_near_duplicate="skip")
    assert getattr(info.value, "code", None) == "status_conflict"
    assert clients.catalog.images[b]["status"] == "failed"
    assert clients.catalog.images[c]["status"] == "removed"
    assert not resolve(ctx.images_dir, clients.catalog.images[c]["storage_key"]).exists()
    assert clients.catalog.images[a]["status"] == "pending"
    assert not clients.index.vectors
    clients.embedding.embed = embed  # type: ignore[method-assign]
    assert ingest(ctx, image_ids=[a, b, c], on_near_duplicate="skip") == (
        "failed=1, indexed=1, skipped=1")
    assert set(clients.index.vectors) == {a}


def test_outcomes_are_recorded_a_page_a_request(data_dir: Path) -> None:
    ctx, clients, _ = make_context(data_dir, page_size=2)
    job = clients.catalog.new_job("bulk_ingest")
    clients.catalog.register_items(job, [1, 2, 3, 4, 5])
    record_items(ctx, job, [(i, "done", None) for i in (1, 2, 3, 4)] + [(5, "failed", "x")])
    assert clients.catalog.record_calls == 3
    job_row = clients.catalog.get_job(job)
    assert (job_row["status"], job_row["done"], job_row["failed"]) == ("succeeded", 4, 1)
