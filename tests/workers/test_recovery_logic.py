"""Which stuck work the light reconcile pass re-drives, with fake services: a row or job
whose task is running (lease, heartbeat) or may still be queued is left alone; one whose
task is gone is re-driven once per grace period."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from services.common import queue
from services.workers.tasks.reconcile import reconcile
from tests.workers.fakes import make_context
from tests.workers.images import make_png
from tests.workers.test_tasks import stored


@pytest.fixture
def env(data_dir: Path) -> Any:
    ctx, clients, enqueued = make_context(data_dir, pending_grace_s=30.0,
                                          pending_timeout_s=3600.0)
    return ctx, clients, enqueued


def old_row(ctx: Any, clients: Any, seed: int) -> int:
    """A pending row last touched a minute ago (past the 30 s grace)."""
    image_id = stored(ctx, clients, make_png(seed))
    clients.catalog.images[image_id]["created"] = time.time() - 60
    return image_id


def test_a_pending_row_is_redriven_only_when_its_task_is_gone(env: Any) -> None:
    ctx, clients, enqueued = env
    running, lost = old_row(ctx, clients, 61), old_row(ctx, clients, 62)
    ctx.lease_image(running, 30)  # a live task renews this
    ctx.queue_depth = lambda: 3   # messages waiting: the lost row's may be one of them
    assert reconcile(ctx, full=False)["stale_pending"] == 0 and enqueued == []
    ctx.queue_depth = lambda: 0   # nothing waiting: the lost row's message is gone
    report = reconcile(ctx, full=False)
    assert report["stale_pending"] == 1
    assert enqueued == [(queue.INGEST, {"image_id": lost})]
    enqueued.clear()
    assert reconcile(ctx, full=False)["stale_pending"] == 0  # its new task gets its chance
    ctx.lease_image(lost, -1)     # that chance lapsed too
    ctx.release_image(running)    # and the running task was killed
    reconcile(ctx, full=False)
    assert sorted(kw["image_id"] for _, kw in enqueued) == sorted([running, lost])


def test_unknown_queue_depth_waits_for_the_long_timeout(env: Any) -> None:
    ctx, clients, _ = env
    old_row(ctx, clients, 63)
    ctx.queue_depth = lambda: None
    assert reconcile(ctx, full=False)["stale_pending"] == 0
    ctx.settings.pending_timeout_s = 0.0
    assert reconcile(ctx, full=False)["stale_pending"] == 1


def test_a_quiet_ingest_job_is_redriven_with_its_id_and_only_once(env: Any) -> None:
    ctx, clients, enqueued = env
    image_id = old_row(ctx, clients, 64)
    job = clients.catalog.new_job("ingest", params={"image_ids": [image_id],
                                                    "on_near_duplicate": "keep"})
    clients.catalog.jobs[job]["status"] = "running"
    ctx.queue_depth = lambda: 0
    ctx.heartbeat(job)            # worked on just now: alive
    assert reconcile(ctx, full=False)["redriven_jobs"] == 0
    enqueued.clear()  # (the row pass re-queued the image on its own meanwhile)
    ctx.release_image(image_id)
    old = time.time() - 60
    os.utime(ctx.heartbeat_dir / f"{job}.alive", (old, old))
    report = reconcile(ctx, full=False)
    assert report["redriven_jobs"] == 1 and report["stale_pending"] == 0
    assert enqueued == [(queue.INGEST, {"image_id": image_id, "job_id": job,
                                        "on_near_duplicate": "keep"})]


def test_the_embedded_broker_forgets_delivered_messages(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from services.common.queue import QueueSettings, make_producer, purge_consumed, send_task
    from services.common.settings import CommonSettings

    url = f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    producer = make_producer(QueueSettings(broker_url=url, queue="q-purge"),
                             CommonSettings(data_dir=tmp_path))
    try:
        for i in range(3):
            send_task(queue.INGEST, {"image_id": i}, producer=producer)
    finally:
        producer.close()
    engine = sa.create_engine(url.removeprefix("sqla+"))
    with engine.begin() as conn:  # what kombu does when a worker takes a message
        conn.execute(sa.text("UPDATE kombu_message SET visible = 0 WHERE id <= 2"))
    assert purge_consumed(url) == 2
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM kombu_message")).scalar() == 1
    engine.dispose()
    assert purge_consumed("redis://127.0.0.1:1/0") == 0
