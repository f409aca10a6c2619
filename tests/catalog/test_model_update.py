"""`POST /v1/images/model`: after a reindex, the model id of indexed rows, and only those.

The repository on each backend, then the route through a real catalog process (token, limits,
body validation)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from services.catalog.db.engine import Database
from services.catalog.repository import images
from services.catalog.repository.images import ImageRecord
from services.catalog.repository.session import transact
from tests.catalog.conftest import catalog_process, create_over_http


def _to(db: Database, record: ImageRecord, *path: str) -> None:
    current = record.status
    for status in path:
        transact(db, images.transition, image_id=record.id, from_=current, to=status,
                 model_id="old:1" if status == "indexed" else None)
        current = status


def test_set_model_touches_only_indexed_rows(db: Database,
                                             make_image: Callable[..., ImageRecord]) -> None:
    indexed = [make_image() for _ in range(3)]
    for record in indexed:
        _to(db, record, "indexed")
    pending = make_image()
    deleting = make_image()
    _to(db, deleting, "indexed", "deleting")
    failed = make_image()
    _to(db, failed, "failed")
    ids = [indexed[2].id, pending.id, 999_999, indexed[0].id, deleting.id, failed.id,
           indexed[1].id, indexed[0].id]
    updated, unchanged = transact(db, images.set_model, ids=ids, model_id="new:2")
    assert updated == [indexed[2].id, indexed[0].id, indexed[1].id]
    assert unchanged == [pending.id, 999_999, deleting.id, failed.id]
    for record in indexed:
        after = transact(db, images.get_image, image_id=record.id)
        assert after.model_id == "new:2" and after.status == "indexed"
    assert transact(db, images.get_image, image_id=deleting.id).model_id == "old:1"
    assert transact(db, images.get_image, image_id=pending.id).model_id is None
    assert transact(db, images.get_image, image_id=failed.id).model_id is None


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A catalog process on SQLite with a small id limit."""
    tmp: Path = tmp_path_factory.mktemp("catalog-model")
    with catalog_process(tmp, f"sqlite:///{tmp / 'catalog.db'}",
                         IMGSEARCH_CATALOG_MAX_LOOKUP_IDS="4") as client:
        yield client


def _create(client: httpx.Client, n: int) -> int:
    return create_over_http(client, 10_000 + n)


@pytest.mark.slow
def test_model_route_over_http(catalog: httpx.Client) -> None:
    a, b, c = (_create(catalog, n) for n in range(3))
    for image_id in (a, b):
        response = catalog.post(f"/v1/images/{image_id}/transition",
                                json={"from": "pending", "to": "indexed", "model_id": "old:1"})
        assert response.status_code == 200, response.text

    response = catalog.post("/v1/images/model", json={"ids": [b, c, a], "model_id": "new:2"})
    assert response.status_code == 200, response.text
    assert response.json() == {"updated": [b, a], "unchanged": [c]}
    rows = {i: catalog.get(f"/v1/images/{i}").json() for i in (a, b, c)}
    assert rows[a]["model_id"] == rows[b]["model_id"] == "new:2"
    assert rows[c]["model_id"] is None and rows[c]["status"] == "pending"

    too_many = catalog.post("/v1/images/model", json={"ids": [a, b, c, 7, 8],
                                                      "model_id": "x:3"})
    assert too_many.status_code == 422
    assert too_many.json()["error"]["code"] == "invalid_request"
    for body in ({"ids": [a]}, {"ids": [a], "model_id": ""}, {"ids": "a", "model_id": "x:3"},
                 {"ids": [a], "model_id": "x:3", "status": "pending"}):
        bad = catalog.post("/v1/images/model", json=body)
        assert bad.status_code == 422, body
        assert bad.json()["error"]["code"] == "invalid_request"
    assert catalog.get(f"/v1/images/{a}").json()["model_id"] == "new:2"

    no_token = httpx.post(str(catalog.base_url) + "/v1/images/model",
                          json={"ids": [a], "model_id": "x:3"})
    assert no_token.status_code == 401
    assert no_token.json()["error"]["code"] == "invalid_internal_token"
    assert catalog.get(f"/v1/images/{a}").json()["model_id"] == "new:2"
