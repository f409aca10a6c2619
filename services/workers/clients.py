"""Typed calls to the catalog, index and embedding services (docs/api-internal.md).

`ServiceClient` carries the internal token and request id and retries transient failures a
few times; what is still transient after that surfaces as `TransientUpstream`, which the task
wrapper turns into a Celery retry with backoff. Unit tests replace these classes with fakes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.common.errors import DomainError, StatusConflict
from services.common.http import ServiceClient
from services.common.settings import common_settings
from services.common.vectors import decode_b64, encode_b64
from services.workers.config import WorkersSettings

Image = dict[str, Any]
Job = dict[str, Any]

# `StatusConflict.current` when the row no longer exists (the catalog answered 404).
ABSENT = "absent"


@dataclass(frozen=True)
class Moved:
    """One row of a batch transition: whether it moved, and its status now (`ABSENT`: no
    such row)."""

    changed: bool
    current: str


def _is_not_found(exc: DomainError) -> bool:
    return exc.status == 404


class CatalogApi:
    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    def call(self, method: str, path: str, body: dict[str, Any]) -> Any:
        """A JSON call (`services.common.gallery.CatalogCall`); errors raise DomainError."""
        return self.client.request(method, path, json=body).json()

    def get_image(self, image_id: int) -> Image | None:
        try:
            image: Image = self.client.request("GET", f"/v1/images/{image_id}").json()
        except DomainError as exc:
            if _is_not_found(exc):
                return None
            raise
        return image

    def create_image(self, body: dict[str, Any]) -> tuple[Image, bool]:
        data = self.client.request("POST", "/v1/images", json=body).json()
        return data["image"], bool(data["created"])

    def transition(self, image_id: int, frm: str, to: str, **fields: Any) -> Image:
        """Compare-and-set `frm` -> `to`; raises StatusConflict with the current status
        (`ABSENT` when the row no longer exists)."""
        body = {"from": frm, "to": to, **{k: v for k, v in fields.items() if v is not None}}
        try:
            image: Image = self.client.request(
                "POST", f"/v1/images/{image_id}/transition", json=body).json()
        except DomainError as exc:
            if _is_not_found(exc):
                raise StatusConflict(exc.message, image_id=image_id, current=ABSENT,
                                     expected=frm) from exc
            if exc.status == StatusConflict.status:
                raise StatusConflict.from_error(exc) from exc
            raise
        return image

    def transition_batch(self, frm: str, to: str, items: list[dict[str, Any]]
                         ) -> dict[int, Moved]:
        """Compare-and-set `frm` -> `to` on many rows in one request; each item is
        `{"id", "model_id"?, "error"?, "thumbnail_key"?, "near_duplicate_of"?}`. Returns each
        id's result: a row not in `frm` is left as it is and reported with its current
        status (`ABSENT` when the row no longer exists)."""
        if not items:
            return {}
        body = {"from": frm, "to": to, "items": [
            {k: v for k, v in item.items() if v is not None} for item in items]}
        data = self.client.request("POST", "/v1/images/transitions", json=body).json()
        return {int(r["id"]): Moved(bool(r["changed"]), r["status"] or ABSENT)
                for r in data["results"]}

    def delete_image(self, image_id: int) -> bool:
        """Remove the row (it must be deleting or removed); False when it was already gone."""
        try:
            self.client.request("DELETE", f"/v1/images/{image_id}")
        except DomainError as exc:
            if _is_not_found(exc):
                return False
            raise
        return True

    def set_model(self, ids: list[int], model_id: str) -> list[int]:
        """Record `model_id` on the rows among `ids` that are indexed; returns those ids."""
        if not ids:
            return []
        data = self.client.request("POST", "/v1/images/model",
                                   json={"ids": ids, "model_id": model_id}).json()
        return [int(i) for i in data["updated"]]

    def lookup(self, ids: list[int]) -> list[Image]:
        images: list[Image] = self.client.request(
            "POST", "/v1/images/lookup", json={"ids": ids}).json()["images"]
        return images

    def list_images(self, *, status: str, limit: int, after: str | None = None
                    ) -> tuple[list[Image], str | None]:
        """One page in creation order, keyset-paged: (images, `after` of the next page)."""
        params: dict[str, Any] = {"status": status, "limit": limit, "order": "asc",
                                  "total": False}
        if after:
            params["after"] = after
        data = self.client.request("GET", "/v1/images", params=params).json()
        return data["images"], data.get("next")

    def stale(self, *, status: str, older_than_s: float, limit: int) -> list[Image]:
        images: list[Image] = self.client.request("GET", "/v1/images/stale", params={
            "status": status, "older_than_s": older_than_s, "limit": limit}).json()["images"]
        return images

    def get_job(self, job_id: int) -> Job | None:
        try:
            job: Job = self.client.request("GET", f"/v1/jobs/{job_id}").json()
        except DomainError as exc:
            if _is_not_found(exc):
                return None
            raise
        return job

    def list_jobs(self, *, status: str, limit: int = 100) -> list[Job]:
        data = self.client.request("GET", "/v1/jobs",
                                   params={"status": status, "limit": limit}).json()
        jobs: list[Job] = data["jobs"] if isinstance(data, dict) else data
        return jobs

    def register_items(self, job_id: int, image_ids: list[int]) -> None:
        if image_ids:
            self.client.request("POST", f"/v1/jobs/{job_id}/items", json={"image_ids": image_ids})

    def record_item(self, job_id: int, image_id: int, state: str,
                    error: str | None = None) -> Job:
        """Record one item's outcome (idempotent); returns the job with its new counts."""
        body: dict[str, Any] = {"state": state}
        if error:
            body["error"] = error[:1000]
        job: Job = self.client.request("POST", f"/v1/jobs/{job_id}/items/{image_id}",
                                       json=body).json()
        return job

    def record_items(self, job_id: int, items: list[tuple[int, str, str | None]]
                     ) -> Job | None:
        """Record several items' outcomes (image id, state, error) in one request (each
        idempotent; an image given twice: its last outcome); returns the job with its new
        counts (None, and no request, for no items)."""
        if not items:
            return None
        last = {image_id: (state, error) for image_id, state, error in items}
        body = {"items": [{"image_id": image_id, "state": state,
                           **({"error": error[:1000]} if error else {})}
                          for image_id, (state, error) in last.items()]}
        job: Job = self.client.request("POST", f"/v1/jobs/{job_id}/outcomes", json=body).json()
        return job

    def finish_job(self, job_id: int, status: str, error: str | None = None) -> None:
        body: dict[str, Any] = {"status": status}
        if error:
            body["error"] = error[:1000]
        try:
            self.client.request("POST", f"/v1/jobs/{job_id}/finish", json=body)
        except DomainError as exc:
            if exc.status != 409:  # already finished: finishing is idempotent for us
                raise


class IndexApi:
    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    def _vectors_body(self, ids: list[int], vectors: NDArray[np.float32], model: str,
                      ) -> dict[str, Any]:
        return {"ids": ids, "vectors_b64": encode_b64(vectors), "dim": int(vectors.shape[1]),
                "model": model}

    def upsert(self, ids: list[int], vectors: NDArray[np.float32], model: str,
               tags: list[list[str]] | None = None) -> None:
        """(n,) ids, (n, d) float32 vectors, and each id's catalog tags (replacing those the
        index holds; None keeps them); acknowledged once durable in the index."""
        body = self._vectors_body(ids, vectors, model)
        if tags is not None:
            body["tags"] = tags
        self.client.request("PUT", "/v1/vectors", json=body)

    def set_tags(self, ids: list[int], tags: list[list[str]]) -> None:
        """Replace the tags the index holds for `ids` (tags[i] for ids[i])."""
        if ids:
            self.client.request("PUT", "/v1/tags", json={"ids": ids, "tags": tags})

    def tags_of(self, ids: list[int]) -> dict[int, list[str]]:
        """The tags the index holds for each of `ids`."""
        if not ids:
            return {}
        data = self.client.request("POST", "/v1/tags/get", json={"ids": ids}).json()
        return {int(i): list(t) for i, t in zip(data["ids"], data["tags"], strict=True)}

    def remove(self, ids: list[int]) -> None:
        if ids:
            self.client.request("DELETE", "/v1/vectors", json={"ids": ids})

    def search(self, vectors: NDArray[np.float32], k: int, model: str,
               ) -> list[tuple[list[int], list[float]]]:
        """(nq, d) queries -> per query (ids, scores), best first."""
        body = {"vectors_b64": encode_b64(vectors), "dim": int(vectors.shape[1]), "k": k,
                "model": model}
        results = self.client.request("POST", "/v1/search", json=body).json()["results"]
        return [([int(i) for i in r["ids"]], [float(s) for s in r["scores"]]) for r in results]

    def present(self, ids: list[int]) -> set[int]:
        """Which of `ids` have a vector."""
        if not ids:
            return set()
        data = self.client.request("POST", "/v1/vectors/get", json={"ids": ids}).json()
        return {int(i) for i in data["ids"]}

    def ids_page(self, after: int | None, limit: int) -> tuple[list[int], int | None]:
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            params["after"] = after
        data = self.client.request("GET", "/v1/ids", params=params).json()
        nxt = data.get("next")
        return [int(i) for i in data["ids"]], (int(nxt) if nxt is not None else None)

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.client.request("GET", "/v1/stats").json()
        return stats

    def staging_create(self, model: str, dim: int) -> None:
        self.client.request("POST", "/v1/staging", json={"model": model, "dim": dim})

    def staging_upsert(self, ids: list[int], vectors: NDArray[np.float32], model: str,
                       tags: list[list[str]] | None = None) -> None:
        body = self._vectors_body(ids, vectors, model)
        if tags is not None:
            body["tags"] = tags
        self.client.request("PUT", "/v1/staging/vectors", json=body)

    def staging_commit(self) -> None:
        self.client.request("POST", "/v1/staging/commit")

    def staging_drop(self) -> None:
        try:
            self.client.request("DELETE", "/v1/staging")
        except DomainError as exc:
            if exc.status != 404:
                raise


class EmbeddingApi:
    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    def embed(self, images: list[bytes]) -> tuple[str, NDArray[np.float32]]:
        """Image files -> (model id, (n, dim) L2-normalised float32 vectors).

        A 4xx (not an image, truncated, too large) raises the service's DomainError: permanent.
        """
        files = [("file", (f"image{i}", data, "application/octet-stream"))
                 for i, data in enumerate(images)]
        data = self.client.request("POST", "/v1/embed", params={"format": "b64"},
                                   files=files).json()
        return str(data["model"]), decode_b64(data["vectors_b64"], int(data["dim"]))

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = self.client.request("GET", "/v1/info").json()
        return info


@dataclass
class Clients:
    catalog: CatalogApi
    index: IndexApi
    embedding: EmbeddingApi

    def close(self) -> None:
        for api in (self.catalog, self.index, self.embedding):
            api.client.close()


def build_clients(settings: WorkersSettings) -> Clients:
    token = common_settings().require_internal_token()

    def client(name: str, url: str) -> ServiceClient:
        return ServiceClient(name, url, token, timeout=settings.http_timeout_s,
                             refresh_s=settings.resolve_every_s,
                             cooldown_s=settings.address_cooldown_s)

    return Clients(
        catalog=CatalogApi(client("catalog", settings.resolved_catalog_url())),
        index=IndexApi(client("index", settings.resolved_index_url())),
        embedding=EmbeddingApi(client("embedding", settings.resolved_embedding_url())),
    )


_process_clients: tuple[int, Clients] | None = None


def process_clients(settings: WorkersSettings) -> Clients:
    """Clients of this process, built after the fork (HTTP connections are not fork-safe)."""
    global _process_clients
    pid = os.getpid()
    if _process_clients is None or _process_clients[0] != pid:
        _process_clients = (pid, build_clients(settings))
    return _process_clients[1]
