"""The workers' catalog client against a real catalog process on MariaDB: the batch
transition and the batch of outcomes as the ingest task reads them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.http import ServiceClient
from services.workers.clients import ABSENT, CatalogApi, Moved
from tests.helpers.procs import catalog_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def catalog(tmp_path: Path, mysql_database_url: str) -> Iterator[CatalogApi]:
    with catalog_service(tmp_path, mysql_database_url) as (url, token):
        client = ServiceClient("catalog", url, token, timeout=30)
        try:
            yield CatalogApi(client)
        finally:
            client.close()


def _image(catalog: CatalogApi, n: int) -> int:
    digest = f"{30_000 + n:064x}"
    row, _ = catalog.create_image({
        "sha256": digest, "original_filename": f"{n}.png", "storage_key": f"k/{digest}.png",
        "mime": "image/png", "width": 4, "height": 4, "bytes": 10})
    return int(row["id"])


def test_batch_transition_and_outcomes_through_the_client(catalog: CatalogApi) -> None:
    a, b, c = (_image(catalog, n) for n in range(3))
    catalog.transition(b, "pending", "deleting")
    catalog.transition(c, "pending", "deleting")
    catalog.transition(c, "deleting", "removed")
    assert catalog.delete_image(c)
    moved = catalog.transition_batch("pending", "indexed", [
        {"id": a, "model_id": "m:1", "thumbnail_key": "th/a", "near_duplicate_of": None},
        {"id": b, "model_id": "m:1", "thumbnail_key": "th/b", "near_duplicate_of": a},
        {"id": c, "model_id": "m:1", "thumbnail_key": None, "near_duplicate_of": None}])
    assert moved == {a: Moved(True, "indexed"), b: Moved(False, "deleting"),
                     c: Moved(False, ABSENT)}
    row = catalog.get_image(a)
    assert row is not None and (row["status"], row["thumbnail_key"]) == ("indexed", "th/a")
    assert catalog.transition_batch("pending", "failed", []) == {}

    job = catalog.client.request("POST", "/v1/jobs", json={"kind": "ingest"}).json()["id"]
    catalog.register_items(job, [a, b, c])
    counts = catalog.record_items(job, [(a, "done", None), (b, "failed", "first"),
                                        (c, "skipped", "image is absent"),
                                        (b, "skipped", "image is deleting")])
    assert counts is not None
    assert (counts["done"], counts["failed"], counts["skipped"]) == (1, 0, 2)
    assert catalog.record_items(job, []) is None
    long = catalog.record_items(job, [(a, "failed", "x" * 2000)])
    assert long is not None and long["items_failed"] == [{"image_id": a, "error": "x" * 1000}]
    got = catalog.get_job(job)
    assert got is not None and got["total"] == 3
