"""Races with real threads on both backends (on MariaDB each thread has its own connection):
one row per sha256, one winner per compare-and-set, job counts exact under parallel reports."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import sqlalchemy as sa

from services.catalog.db.engine import Database
from services.catalog.db.models import Image, Tag
from services.catalog.repository import images, jobs
from services.catalog.repository.images import ImageRecord
from services.catalog.repository.session import read, transact
from services.common.errors import StatusConflict
from tests.catalog.conftest import sha

THREADS = 8
ROUNDS = 5
T = TypeVar("T")


def _race(n: int, fn: Callable[[int], T]) -> list[T | BaseException]:
    """Run fn(0..n-1) in n threads released together; results or exceptions in order."""
    barrier = threading.Barrier(n)

    def run(i: int) -> T | BaseException:
        barrier.wait()
        try:
            return fn(i)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_same_bytes_at_the_same_moment_give_one_row(db: Database) -> None:
    for round_ in range(ROUNDS):
        digest = sha(1000 + round_)

        def create(i: int, digest: str = digest) -> tuple[ImageRecord, bool]:
            return transact(db, images.create_image, sha256=digest,
                            original_filename=f"upload-{i}.jpg", storage_key=f"k/{digest}",
                            mime="image/jpeg", width=10, height=10, bytes=100,
                            tags=[f"t{i % 2}"])

        results = _race(THREADS, create)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert errors == []
        outcomes = [r for r in results if not isinstance(r, BaseException)]
        assert len({record.id for record, _ in outcomes}) == 1
        assert sum(created for _, created in outcomes) == 1
        with db.read() as session:
            rows = session.execute(
                sa.select(sa.func.count()).select_from(Image).where(Image.sha256 == digest)
            ).scalar_one()
        assert rows == 1
        final = read(db, images.get_image, image_id=outcomes[0][0].id)
        assert final.tags == ["t0", "t1"]
    with db.read() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(Tag)).scalar_one() == 2


def test_racing_transitions_have_exactly_one_winner(db: Database) -> None:
    for round_ in range(ROUNDS):
        image, _ = transact(db, images.create_image, sha256=sha(2000 + round_),
                            original_filename="a.jpg", storage_key="k", mime="image/jpeg",
                            width=1, height=1, bytes=1)

        def move(i: int, image_id: int = image.id) -> ImageRecord:
            to = "indexed" if i % 2 else "failed"
            return transact(db, images.transition, image_id=image_id, from_="pending", to=to,
                            model_id="m" if to == "indexed" else None, error=f"worker {i}")

        results = _race(THREADS, move)
        winners = [r for r in results if isinstance(r, ImageRecord)]
        losers = [r for r in results if isinstance(r, StatusConflict)]
        assert len(winners) == 1
        assert len(losers) == THREADS - 1
        final = read(db, images.get_image, image_id=image.id)
        assert final.status == winners[0].status
        assert {loser.detail["current"] for loser in losers} == {final.status}


def test_parallel_item_reports_count_exactly(db: Database) -> None:
    job = transact(db, jobs.create_job, kind="bulk_ingest", total=40)
    transact(db, jobs.register_items, job_id=job.id, image_ids=list(range(40)), max_items=100)

    def report(i: int) -> Any:
        # Every item is reported twice (a retried task), by two different threads.
        for image_id in range(i % (THREADS // 2), 40, THREADS // 2):
            state = "failed" if image_id % 10 == 0 else "done"
            transact(db, jobs.record_item, job_id=job.id, image_id=image_id, state=state,
                     error="bad" if state == "failed" else None)

    results = _race(THREADS, report)
    assert [r for r in results if isinstance(r, BaseException)] == []
    final = read(db, jobs.get_job, job_id=job.id)
    assert (final.done, final.failed, final.skipped, final.total) == (36, 4, 0, 40)
