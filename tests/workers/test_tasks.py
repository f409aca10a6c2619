"""The task logic against in-memory services (the clients replaced at their boundary):
state transitions, idempotence after a crash at each step, near duplicates, failures."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from services.common import queue
from services.common.errors import DomainError
from services.common.http import TransientUpstream
from services.common.storage import image_key, resolve, thumbnail_key, write_atomic
from services.workers.tasks import backoff_s, is_transient
from services.workers.tasks.bulk import bulk_ingest
from services.workers.tasks.context import TaskContext
from services.workers.tasks.ingest import ingest
from services.workers.tasks.reconcile import reconcile
from services.workers.tasks.reindex import reindex
from services.workers.tasks.removal import delete
from tests.workers.fakes import FakeClients, make_context
from tests.workers.images import make_png


def stored(ctx: TaskContext, clients: FakeClients, data: bytes, **extra: Any) -> int:
    sha = hashlib.sha256(data).hexdigest()
    key = image_key(sha, "png")
    write_atomic(resolve(ctx.images_dir, key), data)
    row = clients.catalog.add(sha256=sha, storage_key=key, original_filename="a.png", **extra)
    return int(row["id"])


@pytest.fixture
def env(data_dir: Path) -> tuple[TaskContext, FakeClients, list[tuple[str, dict[str, Any]]]]:
    return make_context(data_dir)


def test_ingest_indexes_makes_thumbnail_and_records_item(env: Any) -> None:
    ctx, clients, _ = env
    image_id = stored(ctx, clients, make_png(1, 400))
    job = clients.catalog.new_job("ingest")
    clients.catalog.register_items(job, [image_id])
    assert ingest(ctx, image_id, job) == "indexed"
    row = clients.catalog.images[image_id]
    assert row["status"] == "indexed"
    assert row["model_id"] == clients.embedding.model
    assert row["thumbnail_key"] == thumbnail_key(row["sha256"])
    from PIL import Image

    with Image.open(resolve(ctx.thumbs_dir, row["thumbnail_key"])) as thumb:
        assert thumb.format == "WEBP" and max(thumb.size) == 320
    assert set(clients.index.vectors) == {image_id}
    assert clients.catalog.get_job(job)["status"] == "succeeded"


def test_ingest_rerun_is_a_noop(env: Any) -> None:
    ctx, clients, _ = env
    image_id = stored(ctx, clients, make_png(2))
    ingest(ctx, image_id)
    calls = clients.embedding.calls
    assert ingest(ctx, image_id) == "noop"
    assert clients.embedding.calls == calls


def test_ingest_after_crash_between_upsert_and_transition_converges(env: Any) -> None:
    ctx, clients, _ = env
    image_id = stored(ctx, clients, make_png(3))
    original = clients.catalog.transition_batch

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise TransientUpstream("catalog went away")

    clients.catalog.transition_batch = crash
    with pytest.raises(TransientUpstream):
        ingest(ctx, image_id)
    assert image_id in clients.index.vectors
    assert clients.catalog.images[image_id]["status"] == "pending"
    clients.catalog.transition_batch = original
    # The vector of the first attempt must not be mistaken for a near duplicate of itself.
    assert ingest(ctx, image_id) == "indexed"
    assert clients.catalog.images[image_id]["near_duplicate_of"] is None
    assert list(clients.index.vectors) == [image_id]


def test_near_duplicate_kept_is_recorded(env: Any) -> None:
    ctx, clients, _ = env
    first, second = make_png(4), make_png(5)
    clients.embedding.aliases[second] = first
    a = stored(ctx, clients, first)
    b = stored(ctx, clients, second)
    ingest(ctx, a)
    assert ingest(ctx, b, on_near_duplicate="keep") == "indexed"
    assert clients.catalog.images[b]["near_duplicate_of"] == a
    assert set(clients.index.vectors) == {a, b}


def test_near_duplicate_skipped_is_removed_with_its_file(env: Any) -> None:
    ctx, clients, _ = env
    first, second = make_png(6), make_png(7)
    clients.embedding.aliases[second] = first
    a = stored(ctx, clients, first)
    b = stored(ctx, clients, second)
    job = clients.catalog.new_job("ingest")
    clients.catalog.register_items(job, [b])
    ingest(ctx, a)
    assert ingest(ctx, b, job, on_near_duplicate="skip") == "skipped"
    row = clients.catalog.images[b]
    assert row["status"] == "removed" and row["near_duplicate_of"] == a
    assert not resolve(ctx.images_dir, row["storage_key"]).exists()
    assert not resolve(ctx.thumbs_dir, thumbnail_key(row["sha256"])).exists()
    assert set(clients.index.vectors) == {a}
    state, error = clients.catalog.items[job][b]
    assert state == "skipped" and error is not None and f"near_duplicate_of={a}" in error


def test_undecodable_image_fails_permanently(env: Any) -> None:
    ctx, clients, _ = env
    data = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
    image_id = stored(ctx, clients, data)
    job = clients.catalog.new_job("ingest")
    clients.catalog.register_items(job, [image_id])
    assert ingest(ctx, image_id, job) == "failed"
    row = clients.catalog.images[image_id]
    assert row["status"] == "failed" and row["error"]
    assert clients.catalog.get_job(job)["status"] == "failed"
    assert image_id not in clients.index.vectors


def test_embedding_refusal_fails_permanently(env: Any) -> None:
    ctx, clients, _ = env
    image_id = stored(ctx, clients, make_png(8))

    def refuse(images: list[bytes]) -> Any:
        raise DomainError("the image is truncated", code="truncated_image", status=400)

    clients.embedding.embed = refuse
    assert ingest(ctx, image_id) == "failed"
    assert clients.catalog.images[image_id]["error"].startswith("truncated_image")


def test_index_down_is_transient_and_leaves_row_pending(env: Any) -> None:
    ctx, clients, _ = env
    image_id = stored(ctx, clients, make_png(9))
    clients.index.down = True
    with pytest.raises(TransientUpstream) as info:
        ingest(ctx, image_id)
    assert is_transient(info.value)
    assert clients.catalog.images[image_id]["status"] == "pending"
    clients.index.down = False
    assert ingest(ctx, image_id) == "indexed"


def test_deleted_while_ingesting_leaves_no_vector(env: Any) -> None:
    ctx, clients, _ = env
    image_id = stored(ctx, clients, make_png(10))
    original = clients.index.upsert

    def upsert_then_delete(ids: list[int], vectors: Any, model: str,
                           tags: list[list[str]] | None = None) -> None:
        clients.catalog.transition(image_id, "pending", "deleting")
        delete(ctx, image_id)  # the delete task ran before our upsert landed
        original(ids, vectors, model, tags)

    clients.index.upsert = upsert_then_delete
    assert ingest(ctx, image_id) == "skipped"
    assert clients.index.vectors == {}


def test_tag_added_while_embedding_is_not_lost_by_the_upsert(env: Any) -> None:
    """An upload of the same file adds a tag (catalog, then index) while the worker embeds:
    the upsert carries the tags the row had at the start, and the worker sends the newer
    ones after it."""
    ctx, clients, _ = env
    image_id = stored(ctx, clients, make_png(12), tags=["a"])
    embed = clients.embedding.embed

    def embed_while_tagged(images: list[bytes]) -> Any:
        out = embed(images)
        clients.catalog.images[image_id]["tags"] = ["a", "b"]  # the upload's catalog write
        clients.index.set_tags([image_id], [["a", "b"]])  # ... and its index write
        return out

    clients.embedding.embed = embed_while_tagged
    assert ingest(ctx, image_id) == "indexed"
    assert clients.index.tags[image_id] == ["a", "b"]


def test_delete_removes_vector_files_and_row_and_is_idempotent(env: Any) -> None:
    ctx, clients, _ = env
    image_id = stored(ctx, clients, make_png(11))
    ingest(ctx, image_id)
    row = clients.catalog.get_image(image_id)
    assert row is not None
    assert delete(ctx, image_id) == "refused"  # not marked deleting
    clients.catalog.transition(image_id, "indexed", "deleting")
    assert delete(ctx, image_id) == "deleted"
    assert image_id not in clients.catalog.images and clients.index.vectors == {}
    assert not resolve(ctx.images_dir, row["storage_key"]).exists()
    assert not resolve(ctx.thumbs_dir, row["thumbnail_key"]).exists()
    assert delete(ctx, image_id) == "absent"


def test_bulk_ingest_stores_registers_and_enqueues_skipping_escapes(env: Any,
                                                                    tmp_path: Path) -> None:
    ctx, clients, enqueued = env
    folder = tmp_path / "gallery"
    (folder / "sub").mkdir(parents=True)
    for i in range(5):
        (folder / "sub" / f"{i}.png").write_bytes(make_png(100 + i))
    (folder / "dup.png").write_bytes(make_png(100))  # same bytes as sub/0.png
    (folder / "notes.txt").write_text("not an image")
    (folder / "fake.jpg").write_bytes(b"not a jpeg at all")
    outside = tmp_path / "secret.png"
    outside.write_bytes(make_png(999))
    os.symlink(outside, folder / "link.png")
    job = clients.catalog.new_job("bulk_ingest")
    assert bulk_ingest(ctx, job, folder=str(folder), tags=["t"], uploader="admin") == 6
    assert len(clients.catalog.images) == 5
    assert all(r["sha256"] != hashlib.sha256(make_png(999)).hexdigest()
               for r in clients.catalog.images.values())
    # One task for the batch (dup.png finds sub/0.png's row: the same id twice).
    assert [name for name, _ in enqueued] == [queue.INGEST]
    assert enqueued[0][1]["job_id"] == job and len(enqueued[0][1]["image_ids"]) == 6
    assert clients.catalog.get_job(job)["total"] == 5
    for _, kw in enqueued:
        ingest(ctx, **kw)
    assert clients.embedding.sizes == [5]  # embedded together, once each
    assert clients.catalog.get_job(job)["status"] == "succeeded"
    assert len(clients.index.vectors) == 5
    # Re-driving the finished job finds everything indexed and enqueues nothing new.
    enqueued.clear()
    bulk_ingest(ctx, job, folder=str(folder))
    assert enqueued == []


def test_reconcile_repairs_drift(env: Any) -> None:
    ctx, clients, enqueued = env
    ctx.settings.pending_timeout_s = 0.0
    a = stored(ctx, clients, make_png(20))
    b = stored(ctx, clients, make_png(21))
    c = stored(ctx, clients, make_png(22))
    ingest(ctx, a)
    ingest(ctx, b)
    clients.index.vectors.pop(b)               # indexed row, vector lost
    clients.index.vectors[777] = clients.index.vectors[a]  # vector with no row
    clients.catalog.transition(a, "indexed", "deleting")
    report = reconcile(ctx)
    assert 777 not in clients.index.vectors
    assert a not in clients.index.vectors     # deleting rows keep no vector
    assert report["orphan_vectors"] == 2
    assert (queue.INGEST, {"image_id": b}) in enqueued
    assert (queue.INGEST, {"image_id": c}) in enqueued   # stale pending
    assert (queue.DELETE, {"image_id": a}) in enqueued   # stale deleting
    for name, kw in enqueued:
        (ingest if name == queue.INGEST else delete)(ctx, **kw)
    assert set(clients.index.vectors) == {b, c}
    assert {i for i, r in clients.catalog.images.items() if r["status"] == "indexed"} == {b, c}


def test_reconcile_redrives_a_stalled_job_once_per_timeout(env: Any) -> None:
    ctx, clients, enqueued = env
    ctx.settings.pending_timeout_s = 3600.0
    job = clients.catalog.new_job("bulk_ingest", params={"folder": "/srv/in", "tags": ["x"]})
    clients.catalog.jobs[job]["status"] = "running"
    reconcile(ctx)  # never worked on here and created_at unknown: counts as stalled
    assert enqueued == [(queue.BULK_INGEST, {"job_id": job, "folder": "/srv/in",
                                             "tags": ["x"]})]
    enqueued.clear()
    reconcile(ctx)  # the re-drive marked it alive: not again before the timeout
    assert enqueued == []


def test_reindex_builds_and_swaps_a_fresh_index(env: Any) -> None:
    ctx, clients, _ = env
    ids = [stored(ctx, clients, make_png(30 + i)) for i in range(3)]
    for image_id in ids:
        ingest(ctx, image_id)
    clients.embedding.model = "fake_vitb14:111111111111"
    job = clients.catalog.new_job("reindex")
    assert reindex(ctx, job) == 3
    # The staged batch's items recorded in one request.
    assert clients.catalog.items[job] == {i: ("done", None) for i in ids}
    assert clients.catalog.record_calls == 1
    assert clients.index.model == "fake_vitb14:111111111111"
    assert set(clients.index.vectors) == set(ids)
    assert clients.catalog.get_job(job)["status"] == "succeeded"
    assert {clients.catalog.images[i]["model_id"] for i in ids} == {"fake_vitb14:111111111111"}


def test_reindex_records_the_model_only_after_the_swap_and_only_on_indexed_rows(
        env: Any) -> None:
    ctx, clients, _ = env
    ctx.settings.page_size = 2  # several pages of rows and of model updates
    old = clients.embedding.model
    ids = [stored(ctx, clients, make_png(40 + i)) for i in range(5)]
    for image_id in ids:
        ingest(ctx, image_id)
    new = "fake_vitb14:222222222222"
    clients.embedding.model = new
    doomed = ids[0]
    commit = clients.index.staging_commit

    def commit_after_a_delete_mark() -> None:
        # Until the swap, search uses vectors of the old model: rows must still name it.
        assert {clients.catalog.images[i]["model_id"] for i in ids} == {old}
        clients.catalog.transition(doomed, "indexed", "deleting")
        commit()

    clients.index.staging_commit = commit_after_a_delete_mark
    assert reindex(ctx) == 5
    assert clients.catalog.model_calls == 3
    assert {clients.catalog.images[i]["model_id"] for i in ids[1:]} == {new}
    assert clients.catalog.images[doomed]["model_id"] == old


def test_reingest_of_an_indexed_row_records_the_model_of_its_new_vector(env: Any) -> None:
    ctx, clients, enqueued = env
    image_id = stored(ctx, clients, make_png(50))
    ingest(ctx, image_id)
    # A reindex swapped in another model's index without this row (it was missed by the
    # paging); reconcile re-queues it and its ingest must name the new model.
    clients.index.vectors.clear()
    clients.index.model = None
    clients.embedding.model = "fake_vitb14:333333333333"
    reconcile(ctx)
    assert (queue.INGEST, {"image_id": image_id}) in enqueued
    assert ingest(ctx, image_id) == "indexed"
    assert clients.catalog.images[image_id]["model_id"] == "fake_vitb14:333333333333"
    assert clients.catalog.images[image_id]["status"] == "indexed"


def test_transient_classification_and_backoff() -> None:
    assert is_transient(TransientUpstream("down"))
    assert is_transient(queue.QueueUnavailable("broker away"))
    assert is_transient(ConnectionRefusedError())
    assert is_transient(DomainError("boom", status=502))
    assert not is_transient(DomainError("bad image", code="not_an_image", status=415))
    assert not is_transient(ValueError("bug"))
    for retries in range(12):
        wait = backoff_s(retries, 60.0)
        assert min(60.0, 2.0 ** retries) / 2 <= wait <= min(60.0, 2.0 ** retries)


def test_bulk_ingest_enqueues_batches_of_ingest_batch(data_dir: Path, tmp_path: Path) -> None:
    ctx, clients, enqueued = make_context(data_dir, ingest_batch=3)
    folder = tmp_path / "gallery"
    folder.mkdir()
    for i in range(7):
        (folder / f"{i}.png").write_bytes(make_png(300 + i))
    job = clients.catalog.new_job("bulk_ingest")
    assert bulk_ingest(ctx, job, folder=str(folder)) == 7
    assert [len(kw["image_ids"]) for _, kw in enqueued] == [3, 3, 1]
    for _, kw in enqueued:
        assert ingest(ctx, **kw) in ("indexed=3", "indexed=1")
    assert clients.embedding.sizes == [3, 3, 1]
    assert clients.catalog.get_job(job)["status"] == "succeeded"


def test_bulk_ingest_registers_a_page_of_files_per_catalog_request(data_dir: Path,
                                                                   tmp_path: Path) -> None:
    """Rows are made `page_size` files at a time; an existing image given new tags has them
    in the catalog and in the index (one index call per page); a page whose catalog request
    fails removes the files it stored and leaves the earlier pages' rows and files."""
    ctx, clients, enqueued = make_context(data_dir, page_size=3)
    folder = tmp_path / "gallery"
    folder.mkdir()
    for i in range(7):
        (folder / f"{i}.png").write_bytes(make_png(600 + i))
    old = stored(ctx, clients, make_png(603), status="indexed", tags=["old"])
    clients.index.tags[old] = ["old"]
    index_calls: list[list[int]] = []
    set_tags = clients.index.set_tags

    def spy(ids: list[int], tags: list[list[str]]) -> None:
        index_calls.append(ids)
        set_tags(ids, tags)

    clients.index.set_tags = spy  # type: ignore[method-assign]
    job = clients.catalog.new_job("bulk_ingest")
    assert bulk_ingest(ctx, job, folder=str(folder), tags=["new"]) == 7
    assert clients.catalog.create_calls == 3  # 3 + 3 + 1 files
    assert len(clients.catalog.images) == 7
    assert clients.catalog.images[old]["tags"] == ["new", "old"]
    assert index_calls == [[old]] and clients.index.tags[old] == ["new", "old"]
    assert sorted(i for _, kw in enqueued for i in kw["image_ids"]) == sorted(
        i for i in clients.catalog.images if i != old)

    more = tmp_path / "more"
    more.mkdir()
    for i in range(5):
        (more / f"{i}.png").write_bytes(make_png(700 + i))
    calls = clients.catalog.create_calls
    call = clients.catalog.call

    def second_page_fails(method: str, path: str, body: dict[str, Any]) -> Any:
        if path == "/v1/images/batch" and clients.catalog.create_calls == calls + 1:
            raise TransientUpstream("catalog unreachable")
        return call(method, path, body)

    clients.catalog.call = second_page_fails  # type: ignore[method-assign]
    with pytest.raises(TransientUpstream):
        bulk_ingest(ctx, clients.catalog.new_job("bulk_ingest"), folder=str(more))
    kept = {hashlib.sha256(make_png(700 + i)).hexdigest() for i in range(3)}
    assert {r["sha256"] for r in clients.catalog.images.values()} >= kept
    assert len(clients.catalog.images) == 10
    names = {p.name.split(".")[0] for p in ctx.images_dir.rglob("*.png")}
    assert names == {r["sha256"] for r in clients.catalog.images.values()}


def test_bulk_ingest_checks_the_whole_file_and_retries_a_failed_image(
        env: Any, tmp_path: Path) -> None:
    """The same steps as an upload: a truncated file (valid header) is refused; a file whose
    row failed before is another try, not a duplicate."""
    ctx, clients, enqueued = env
    folder = tmp_path / "gallery"
    folder.mkdir()
    good = make_png(400, 300)
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    again = make_png(401)
    (folder / "again.png").write_bytes(again)
    earlier = stored(ctx, clients, again)
    clients.catalog.transition(earlier, "pending", "failed", error="embedding was down")
    job = clients.catalog.new_job("bulk_ingest")
    assert bulk_ingest(ctx, job, folder=str(folder), tags=["t"]) == 1
    assert len(clients.catalog.images) == 1  # no row for the truncated file
    assert clients.catalog.images[earlier]["status"] == "pending"
    assert clients.catalog.images[earlier]["tags"] == ["t"]
    assert enqueued[0][1]["image_ids"] == [earlier]
    ingest(ctx, **enqueued[0][1])
    assert clients.catalog.images[earlier]["status"] == "indexed"
    assert clients.catalog.get_job(job)["status"] == "succeeded"


def test_batch_is_one_embed_request_and_a_refused_image_fails_alone(env: Any) -> None:
    ctx, clients, _ = env
    datas = [make_png(500 + i) for i in range(5)]
    ids = [stored(ctx, clients, d) for d in datas]
    clients.embedding.refused.add(datas[2])
    job = clients.catalog.new_job("ingest")
    clients.catalog.register_items(job, ids)
    assert ingest(ctx, job_id=job, image_ids=ids) == "failed=1, indexed=4"
    # The whole batch, then the four the service accepts.
    assert clients.embedding.sizes == [5, 4]
    assert clients.catalog.images[ids[2]]["status"] == "failed"
    assert clients.catalog.images[ids[2]]["error"].startswith("not_an_image")
    assert set(clients.index.vectors) == {ids[i] for i in (0, 1, 3, 4)}
    assert clients.index.upserts == 1
    assert clients.catalog.get_job(job)["status"] == "succeeded"
    # A re-run (a redelivered message) changes nothing and embeds nothing.
    calls = clients.embedding.calls
    assert ingest(ctx, job_id=job, image_ids=ids) == "failed=1, noop=4"
    assert clients.embedding.calls == calls


def test_batch_after_crash_between_upsert_and_transitions_converges(env: Any) -> None:
    """The batch transition is one request: it fails before the catalog applies it (every
    row still pending) or after (every row indexed, the answer lost); either way the retry
    converges without near duplicates of the batch's own vectors."""
    ctx, clients, _ = env
    original = clients.catalog.transition_batch

    def crash_before(*args: Any, **kwargs: Any) -> Any:
        raise TransientUpstream("catalog went away")

    def crash_after(*args: Any, **kwargs: Any) -> Any:
        original(*args, **kwargs)
        raise TransientUpstream("the answer was lost")

    for base, crash, rerun in ((600, crash_before, "indexed=3"),
                               (610, crash_after, "noop=3")):
        ids = [stored(ctx, clients, make_png(base + i)) for i in range(3)]
        job = clients.catalog.new_job("ingest")
        clients.catalog.register_items(job, ids)
        clients.catalog.transition_batch = crash
        with pytest.raises(TransientUpstream):
            ingest(ctx, job_id=job, image_ids=ids)
        assert clients.catalog.get_job(job)["done"] == 0
        clients.catalog.transition_batch = original
        assert ingest(ctx, job_id=job, image_ids=ids) == rerun
        assert all(clients.catalog.images[i]["status"] == "indexed" for i in ids)
        assert all(clients.catalog.images[i]["near_duplicate_of"] is None for i in ids)
        assert set(ids) <= set(clients.index.vectors)
        job_row = clients.catalog.get_job(job)
        assert (job_row["status"], job_row["done"]) == ("succeeded", 3)


def test_near_duplicates_within_one_batch_are_found(env: Any) -> None:
    ctx, clients, _ = env
    first, second, third = make_png(700), make_png(701), make_png(702)
    clients.embedding.aliases[second] = first
    clients.embedding.aliases[third] = first
    ids = [stored(ctx, clients, d) for d in (first, second, third)]
    assert ingest(ctx, image_ids=ids, on_near_duplicate="skip") == "indexed=1, skipped=2"
    assert set(clients.index.vectors) == {ids[0]}
    assert clients.catalog.images[ids[1]]["near_duplicate_of"] == ids[0]
    # The third resembles the second, which was skipped: it names the image kept.
    assert clients.catalog.images[ids[2]]["near_duplicate_of"] == ids[0]


def test_ingest_carries_tags_and_reconcile_resyncs_them(env: Any) -> None:
    ctx, clients, _ = env
    a = stored(ctx, clients, make_png(30), tags=["beach", "sea"])
    b = stored(ctx, clients, make_png(31), tags=["sea"])
    ingest(ctx, a)
    ingest(ctx, b)
    assert clients.index.tags == {a: ["beach", "sea"], b: ["sea"]}
    clients.index.tags[a] = ["stray"]           # a change the index missed
    clients.catalog.images[b]["tags"] = ["sea", "sun"]
    report = reconcile(ctx)
    assert report["tags_synced"] == 2
    assert clients.index.tags == {a: ["beach", "sea"], b: ["sea", "sun"]}
    assert reconcile(ctx)["tags_synced"] == 0
    clients.catalog.transition(a, "indexed", "deleting")
    delete(ctx, a)
    assert a not in clients.index.tags
