"""The kept rows-per-status counts: exact against a GROUP BY of the rows after 8 threads
race creates (some of the same bytes), compare-and-set transitions, bulk transitions and
deletes on the same rows; and after migration 0003 on a database already holding rows."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from alembic import command

from services.catalog.db.engine import Database
from services.catalog.db.migrate import alembic_config, upgrade
from services.catalog.db.models import Image
from services.catalog.repository import counts, images
from services.catalog.repository.errors import ImageNotFound
from services.catalog.repository.session import read, transact
from services.common.errors import StatusConflict
from services.common.vocabulary import ImageStatus
from tests.catalog.conftest import sha

THREADS = 8
OPS = 60


def _grouped(db: Database) -> dict[str, int]:
    with db.read() as session:
        found = dict(session.execute(
            sa.select(Image.status, sa.func.count()).group_by(Image.status)).all())
    return {s: int(found.get(s, 0)) for s in ImageStatus}


def _create(db: Database, n: int) -> int:
    record, _ = transact(db, images.create_image, sha256=sha(n), original_filename="a.jpg",
                         storage_key=f"k/{n}", mime="image/jpeg", width=1, height=1, bytes=1)
    return record.id


def _random_op(db: Database, rng: random.Random, ids: list[int], lock: threading.Lock) -> None:
    with lock:
        image_id = rng.choice(ids) if ids else None
    roll = rng.random()
    try:
        if roll < 0.25 or image_id is None:
            new_id = _create(db, rng.randrange(80))  # duplicates race on the unique key
            with lock:
                ids.append(new_id)
        elif roll < 0.6:
            frm, to = rng.choice([("pending", "indexed"), ("pending", "failed"),
                                  ("failed", "pending"), ("indexed", "deleting"),
                                  ("deleting", "removed"), ("pending", "deleting")])
            transact(db, images.transition, image_id=image_id, from_=frm, to=to)
        elif roll < 0.8:
            with lock:
                some = rng.sample(ids, min(len(ids), 5))
            transact(db, images.bulk_transition, ids=some,
                     from_=["pending", "indexed", "failed"], to="deleting")
        else:
            transact(db, images.delete_image, image_id=image_id)
    except (ImageNotFound, StatusConflict):
        pass  # lost a race, or an id deleted meanwhile: the counts must still agree


def test_counts_stay_exact_under_concurrent_writers(db: Database) -> None:
    ids: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS)

    def work(seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        for _ in range(OPS):
            _random_op(db, rng, ids, lock)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(work, range(THREADS)))
    kept = read(db, images.status_counts)
    assert kept == _grouped(db)
    assert sum(kept.values()) > 0 and kept["removed"] + kept["deleting"] > 0


def test_migration_fills_the_counts_from_existing_rows(db: Database) -> None:
    for n in range(30):
        image_id = _create(db, n)
        if n % 3 == 0:
            transact(db, images.transition, image_id=image_id, from_="pending", to="indexed")
        elif n % 5 == 0:
            transact(db, images.transition, image_id=image_id, from_="pending", to="failed")
    config = alembic_config()
    with db.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0002_user_token_version")
    assert "image_status_counts" not in sa.inspect(db.engine).get_table_names()
    with db.engine.begin() as conn:  # rows written while no counts were kept
        conn.execute(sa.update(Image).where(Image.status == "failed").values(status="pending"))
    upgrade(db.engine)
    assert read(db, images.status_counts) == _grouped(db) == {
        "pending": 20, "indexed": 10, "failed": 0, "deleting": 0, "removed": 0}
    # And kept from there on.
    transact(db, images.transition, image_id=_create(db, 99), from_="pending", to="indexed")
    assert read(db, images.status_counts) == _grouped(db)


def test_recount_repairs_counts(db: Database) -> None:
    for n in range(4):
        _create(db, n)
    with db.engine.begin() as conn:  # a writer that bypassed the repository
        conn.execute(sa.delete(Image))
    with db.write() as session:
        counts.recount(session)
        session.commit()
    assert read(db, images.status_counts) == _grouped(db) == dict.fromkeys(
        tuple(ImageStatus), 0)
