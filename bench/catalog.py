"""The catalog at millions of rows on MySQL/MariaDB -> docs/benchmarks.md, section "catalog".

Creates its own database (`imgsearch_bench_catalog_<pid>` on the server of --url), applies
the migrations, loads --rows image rows in bulk (multi-row INSERTs of 5000 rows, ids and
timestamps ascending as uploads make them, 97% indexed; a tag on 10% of the images and one
on 0.1%), then times each query the catalog's list/filter/page routes, its stats and
reconcile's scans run (through the repository functions the routes call), median and
slowest of --repeat runs. Deep offsets and an exact total are timed beside keyset pages for
contrast. The database is dropped at the end (--keep keeps it for another run: --reuse).

    python bench/catalog.py --rows 10000000
    python bench/catalog.py --rows 100000 --dry-run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import markdown_table, write_section
from services.catalog.config import DatabaseSettings
from services.catalog.db.engine import Database
from services.catalog.db.migrate import upgrade
from services.catalog.repository import images as repo
from services.catalog.repository.session import read

BATCH = 5000
BASE = datetime(2025, 1, 1, tzinfo=UTC)


def status_of(i: int) -> str:
    r = i % 200
    return ("pending" if r == 0 else "failed" if r in (1, 2) else "deleting" if r == 3
            else "removed" if r == 4 else "indexed")


def load(db_url: str, rows: int) -> None:
    engine = sa.create_engine(db_url)
    columns = ("id, sha256, original_filename, storage_key, mime, width, height, bytes, "
               "status, model_id, uploader, created_at, updated_at")
    insert = f"INSERT INTO images ({columns}) VALUES ({', '.join(['%s'] * 13)})"
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO tags (id, name) VALUES (1, 'tenth'), (2, 'rare')")
    with engine.connect() as conn, tqdm(total=rows, desc="load", unit="row",
                                        mininterval=10) as bar:
        conn.exec_driver_sql("SET unique_checks = 0, foreign_key_checks = 0")
        for start in range(1, rows + 1, BATCH):
            stop = min(start + BATCH, rows + 1)
            values = []
            for i in range(start, stop):
                # Two uploads per second: ties on created_at, broken by the id.
                stamp = (BASE + timedelta(seconds=i // 2)).replace(tzinfo=None)
                values.append((i, f"{i:064x}", f"IMG_{i:08d}.jpg", f"{i:064x}"[:2] + f"/{i:064x}",
                               "image/jpeg", 1024, 768, 250_000, status_of(i),
                               "dinov2_vitb14:bench", ("admin", "alice", "bob")[i % 3], stamp,
                               stamp))
            conn.exec_driver_sql(insert, values)
            tagged = [(i, 1) for i in range(start, stop) if i % 10 == 0]
            tagged += [(i, 2) for i in range(start, stop) if i % 1000 == 0]
            if tagged:
                conn.exec_driver_sql("INSERT INTO image_tags (image_id, tag_id) VALUES (%s, %s)",
                                     tagged)
            conn.commit()
            bar.update(stop - start)
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE TABLE images, image_tags, tags")
    engine.dispose()


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """(median ms, slowest ms, last result) of `repeat` calls after one warm-up."""
    result = fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), max(times), result


def measure(db: Database, rows: int, repeat: int) -> list[list[object]]:
    mid = rows // 2
    mid_stamp = BASE + timedelta(seconds=mid // 2)
    deep = (mid_stamp, mid)
    cases: list[tuple[str, str, Callable[[], Any], int]] = [
        ("list", "newest page (50), no total",
         lambda: read(db, repo.list_images, limit=50, with_total=False), repeat),
        ("list", "keyset page half way down (after=)",
         lambda: read(db, repo.list_images, limit=50, after=deep, with_total=False), repeat),
        ("list", f"offset page half way down (offset={mid:,}; contrast)",
         lambda: read(db, repo.list_images, limit=50, offset=mid, with_total=False), 1),
        ("list", "exact total of every row (total=true; contrast)",
         lambda: read(db, repo.list_images, limit=1), 1),
        ("filter", "status=indexed, newest page",
         lambda: read(db, repo.list_images, statuses=["indexed"], limit=50, with_total=False),
         repeat),
        ("filter", "status=indexed, keyset page half way down",
         lambda: read(db, repo.list_images, statuses=["indexed"], limit=50, after=deep,
                      with_total=False), repeat),
        ("filter", "tag on 10% of images, newest page",
         lambda: read(db, repo.list_images, tags=["tenth"], limit=50, with_total=False), repeat),
        ("filter", "tag on 10%, keyset page half way down",
         lambda: read(db, repo.list_images, tags=["tenth"], limit=50, after=deep,
                      with_total=False), repeat),
        ("filter", "tag on 0.1% of images, newest page",
         lambda: read(db, repo.list_images, tags=["rare"], limit=50, with_total=False), repeat),
        ("filter", "ids of the 10% tag (what filtered search fetches today)",
         lambda: read(db, repo.ids_with_tags, tags=["tenth"]), 1),
        ("stats", "rows per status",
         lambda: read(db, repo.status_counts), repeat),
        ("reconcile", "stale pending rows (500)",
         lambda: read(db, repo.stale, status="pending", older_than_s=3600, limit=500), repeat),
        ("reconcile", "lookup of 500 ids (orphan check)",
         lambda: read(db, repo.lookup, ids=list(range(mid, mid + 500))), repeat),
        ("reconcile", "indexed rows in creation order, keyset page of 500 half way",
         lambda: read(db, repo.list_images, statuses=["indexed"], limit=500, after=deep,
                      descending=False, with_total=False), repeat),
    ]
    out: list[list[object]] = []
    for group, name, fn, n in cases:
        median, slowest, _ = timed(fn, n)
        out.append([group, name, f"{median:.1f}", f"{slowest:.1f}"])
        print(out[-1], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get(
        "IMGSEARCH_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"))
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--reuse", help="a database kept by --keep (skips the load)")
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    parser.add_argument("--dry-run", action="store_true", help="print, do not write the doc")
    args = parser.parse_args()
    server = make_url(args.url)
    name = args.reuse or f"imgsearch_bench_catalog_{os.getpid()}"
    admin = sa.create_engine(server)
    url = server.set(database=name)
    started = time.monotonic()
    print(f"database {name}", flush=True)
    if not args.reuse:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        db = Database.from_settings(DatabaseSettings(), url)
        if not args.reuse:
            upgrade(db.engine)
            load(url.render_as_string(hide_password=False), args.rows)
        load_s = time.monotonic() - started
        with admin.connect() as conn:
            version = conn.exec_driver_sql("SELECT VERSION()").scalar_one()
            pool = conn.exec_driver_sql("SELECT @@innodb_buffer_pool_size").scalar_one()
        table = measure(db, args.rows, args.repeat)
        db.dispose()
    finally:
        if not args.keep:
            with admin.begin() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        admin.dispose()
    body = (f"{args.rows:,} image rows on {version} (InnoDB buffer pool "
            f"{int(pool) / 2**20:.0f} MB, shared with other work), "
            + (f"loaded in bulk by an earlier run (--reuse {args.reuse})" if args.reuse
               else f"loaded in bulk in {load_s / 60:.0f} min")
            + "; tags on 10% and 0.1% of the images. Each query through "
            "the repository function its route calls, one connection; median and slowest of "
            f"{args.repeat} runs after a warm-up (contrast rows: one run).\n\n"
            + markdown_table(["what", "query", "median (ms)", "slowest (ms)"], table))
    print(body)
    if not args.dry_run:
        write_section("catalog", "Catalog at scale", body)


if __name__ == "__main__":
    main()
