"""In-memory stand-ins for the catalog, index and embedding APIs, replacing
`services.workers.clients` at its boundary in unit tests of the task logic. They follow
docs/api-internal.md: compare-and-set transitions, idempotent deletes, idempotent job items."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.common.errors import DomainError, StatusConflict
from services.common.http import TransientUpstream
from services.common.vocabulary import GONE, JOB_FINISHED, ImageStatus, JobStatus, is_edge
from services.workers.clients import ABSENT, Moved
from services.workers.config import WorkersSettings
from services.workers.tasks.context import TaskContext


class FakeCatalog:
    def __init__(self) -> None:
        self.images: dict[int, dict[str, Any]] = {}
        self.jobs: dict[int, dict[str, Any]] = {}
        self.items: dict[int, dict[int, tuple[str, str | None]]] = {}
        self.next_id = 1
        self.model_calls = 0
        self.batch_calls: list[tuple[str, str, list[int]]] = []  # transition_batch calls
        self.record_calls = 0  # record_items calls
        self.create_calls = 0  # POST /v1/images/batch calls

    def add(self, **fields: Any) -> dict[str, Any]:
        image_id = self.next_id
        self.next_id += 1
        row = {"id": image_id, "status": ImageStatus.pending, "thumbnail_key": None,
               "model_id": None, "error": None, "near_duplicate_of": None,
               "created": time.time(), **fields}
        self.images[image_id] = row
        return row

    def call(self, method: str, path: str, body: dict[str, Any]) -> Any:
        """The JSON calls of `services.common.gallery.register_many`."""
        parts = path.strip("/").split("/")
        if (method, parts) == ("POST", ["v1", "images", "batch"]):
            self.create_calls += 1
            results = []
            for image in body["images"]:
                row, created = self.create_image(image)
                results.append({"image": row, "created": created})
            return {"results": results}
        if method == "POST" and parts[:2] == ["v1", "images"] and len(parts) == 4:
            image_id = int(parts[2])
            if parts[3] == "transition":
                return self.transition(image_id, body["from"], body["to"])
        raise AssertionError(f"unexpected catalog call {method} {path}")

    def get_image(self, image_id: int) -> dict[str, Any] | None:
        row = self.images.get(image_id)
        return dict(row) if row else None

    def create_image(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """A new pending row, or the row of the same sha256; tags given are added to it."""
        for row in self.images.values():
            if row["sha256"] == body["sha256"]:
                row["tags"] = sorted(set(row.get("tags") or []) | set(body.get("tags") or []))
                return dict(row), False
        return dict(self.add(**{**body, "tags": sorted(set(body.get("tags") or []))})), True

    def transition(self, image_id: int, frm: str, to: str, **fields: Any) -> dict[str, Any]:
        return self._move(image_id, frm, to, fields)

    def _move(self, image_id: int, frm: str, to: str, fields: dict[str, Any]) -> dict[str, Any]:
        """A compare-and-set of one row (a single transition, or one row of a batch)."""
        row = self.images.get(image_id)
        if row is None:
            raise StatusConflict("no such image", image_id=image_id, current=ABSENT,
                                 expected=frm)
        if row["status"] != frm or not is_edge(frm, to):
            raise StatusConflict("status conflict", image_id=image_id, current=row["status"],
                                 expected=frm)
        row["status"] = to
        row.update({k: v for k, v in fields.items() if v is not None})
        return dict(row)

    def transition_batch(self, frm: str, to: str, items: list[dict[str, Any]]
                         ) -> dict[int, Moved]:
        self.batch_calls.append((frm, to, [int(item["id"]) for item in items]))
        if not is_edge(frm, to):
            raise DomainError("not an edge", code="invalid_transition", status=422)
        ids = [int(item["id"]) for item in items]
        if len(set(ids)) != len(ids):
            raise DomainError("duplicate ids", code="duplicate_ids", status=422)
        out: dict[int, Moved] = {}
        for item in items:
            fields = {k: v for k, v in item.items() if k != "id"}
            try:
                self._move(int(item["id"]), frm, to, fields)
                out[int(item["id"])] = Moved(True, to)
            except StatusConflict as exc:
                out[int(item["id"])] = Moved(False, str(exc.current))
        return out

    def delete_image(self, image_id: int) -> bool:
        row = self.images.get(image_id)
        if row is None:
            return False
        if row["status"] not in GONE:
            raise StatusConflict("status conflict", image_id=image_id, current=row["status"],
                                 expected=sorted(GONE))
        del self.images[image_id]
        return True

    def set_model(self, ids: list[int], model_id: str) -> list[int]:
        self.model_calls += 1
        updated = [i for i in dict.fromkeys(ids)
                   if i in self.images and self.images[i]["status"] == ImageStatus.indexed]
        for i in updated:
            self.images[i]["model_id"] = model_id
        return updated

    def lookup(self, ids: list[int]) -> list[dict[str, Any]]:
        return [dict(self.images[i]) for i in ids if i in self.images]

    def list_images(self, *, status: str, limit: int, after: str | None = None,
                    ) -> tuple[list[dict[str, Any]], str | None]:
        """Keyset pages by id (the cursor is the last id of the page, as text)."""
        rows = [dict(r) for i, r in sorted(self.images.items())
                if r["status"] == status and (after is None or i > int(after))]
        page = rows[:limit]
        return page, str(page[-1]["id"]) if len(page) == limit else None

    def stale(self, *, status: str, older_than_s: float, limit: int) -> list[dict[str, Any]]:
        now = time.time()
        return [dict(r) for r in self.images.values()
                if r["status"] == status and now - r["created"] >= older_than_s][:limit]

    def new_job(self, kind: str, total: int = 0, params: dict[str, Any] | None = None) -> int:
        job_id = len(self.jobs) + 1
        self.jobs[job_id] = {"id": job_id, "kind": kind, "status": JobStatus.queued, "total": total,
                             "params": params or {}, "created_at": None, "error": None}
        self.items[job_id] = {}
        return job_id

    def get_job(self, job_id: int) -> dict[str, Any] | None:
        job = self.jobs.get(job_id)
        if job is None:
            return None
        states = [s for s, _ in self.items[job_id].values()]
        return {**job, "done": states.count("done"), "failed": states.count("failed"),
                "skipped": states.count("skipped")}

    def list_jobs(self, *, status: str, limit: int = 100) -> list[dict[str, Any]]:
        return [j for j in (self.get_job(i) for i in self.jobs) if j and j["status"] == status]

    def register_items(self, job_id: int, image_ids: list[int]) -> None:
        for image_id in image_ids:
            self.items[job_id].setdefault(image_id, ("pending", None))
        self.jobs[job_id]["total"] = len(self.items[job_id])
        if self.jobs[job_id]["status"] == JobStatus.queued:
            self.jobs[job_id]["status"] = JobStatus.running

    def record_item(self, job_id: int, image_id: int, state: str,
                    error: str | None = None) -> dict[str, Any]:
        return self._record(job_id, [(image_id, state, error)])

    def record_items(self, job_id: int, items: list[tuple[int, str, str | None]],
                     ) -> dict[str, Any]:
        self.record_calls += 1
        return self._record(job_id, items)

    def _record(self, job_id: int, items: list[tuple[int, str, str | None]]
                ) -> dict[str, Any]:
        for image_id, state, error in items:
            self.items[job_id][image_id] = (state, error)
        if self.jobs[job_id]["status"] == JobStatus.queued:
            self.jobs[job_id]["status"] = JobStatus.running
        job = self.get_job(job_id)
        assert job is not None
        return job

    def finish_job(self, job_id: int, status: str, error: str | None = None) -> None:
        if self.jobs[job_id]["status"] not in JOB_FINISHED:
            self.jobs[job_id].update(status=status, error=error)


class FakeIndex:
    def __init__(self) -> None:
        self.vectors: dict[int, NDArray[np.float32]] = {}
        self.model: str | None = None
        self.staging: dict[int, NDArray[np.float32]] | None = None
        self.staging_model: str | None = None
        self.down = False
        self.upserts = 0
        self.tags: dict[int, list[str]] = {}

    def _check(self) -> None:
        if self.down:
            raise TransientUpstream("index unreachable")

    def upsert(self, ids: list[int], vectors: NDArray[np.float32], model: str,
               tags: list[list[str]] | None = None) -> None:
        self._check()
        if self.model not in (None, model):
            raise DomainError("model mismatch", code="model_mismatch", status=409)
        self.model = model
        self.upserts += 1
        for i, v in zip(ids, vectors, strict=True):
            self.vectors[i] = v
        if tags is not None:
            self.set_tags(ids, tags)

    def set_tags(self, ids: list[int], tags: list[list[str]]) -> None:
        self._check()
        for i, t in zip(ids, tags, strict=True):
            self.tags[i] = sorted(t)

    def tags_of(self, ids: list[int]) -> dict[int, list[str]]:
        self._check()
        return {i: self.tags.get(i, []) for i in ids}

    def remove(self, ids: list[int]) -> None:
        self._check()
        for i in ids:
            self.vectors.pop(i, None)
            self.tags.pop(i, None)
            if self.staging is not None:
                self.staging.pop(i, None)

    def search(self, vectors: NDArray[np.float32], k: int, model: str,
               ) -> list[tuple[list[int], list[float]]]:
        self._check()
        if not self.vectors:
            return [([], []) for _ in vectors]
        ids = list(self.vectors)
        out = []
        for query in vectors:
            scores = np.stack([self.vectors[i] for i in ids]) @ query
            order = np.argsort(-scores)[:k]
            out.append(([ids[j] for j in order], [float(scores[j]) for j in order]))
        return out

    def present(self, ids: list[int]) -> set[int]:
        self._check()
        return {i for i in ids if i in self.vectors}

    def ids_page(self, after: int | None, limit: int) -> tuple[list[int], int | None]:
        ids = sorted(i for i in self.vectors if after is None or i > after)
        page = ids[:limit]
        return page, (page[-1] if len(ids) > limit else None)

    def staging_create(self, model: str, dim: int) -> None:
        self.staging, self.staging_model = {}, model

    def staging_upsert(self, ids: list[int], vectors: NDArray[np.float32], model: str,
                       tags: list[list[str]] | None = None) -> None:
        assert self.staging is not None
        for i, v in zip(ids, vectors, strict=True):
            self.staging[i] = v

    def staging_commit(self) -> None:
        assert self.staging is not None
        self.vectors, self.model, self.staging = self.staging, self.staging_model, None


class FakeEmbedding:
    """Vectors from the file's hash (distinct files, distinct unit vectors), or a fixed vector
    for files listed in `aliases` (to make near duplicates)."""

    def __init__(self, model: str = "fake_vits14:000000000000", dim: int = 8) -> None:
        self.model = model
        self.dim = dim
        self.aliases: dict[bytes, bytes] = {}
        self.refused: set[bytes] = set()  # valid files the service answers 4xx for
        self.calls = 0
        self.sizes: list[int] = []  # images per embed request

    def vector(self, data: bytes) -> NDArray[np.float32]:
        data = self.aliases.get(data, data)
        seed = int.from_bytes(hashlib.sha256(data).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        out: NDArray[np.float32] = v / np.linalg.norm(v)
        return out

    def embed(self, images: list[bytes]) -> tuple[str, NDArray[np.float32]]:
        """Like the service: the first bad image fails the request, naming its index."""
        self.calls += 1
        self.sizes.append(len(images))
        for index, data in enumerate(images):
            if not data.startswith((b"\x89PNG", b"\xff\xd8")) or data in self.refused:
                raise DomainError("not an image", code="not_an_image", status=415,
                                  detail={"index": index} if len(images) > 1 else None)
        return self.model, np.stack([self.vector(d) for d in images])

    def info(self) -> dict[str, Any]:
        return {"model": self.model, "dim": self.dim}


class FakeClients:
    def __init__(self) -> None:
        self.catalog = FakeCatalog()
        self.index = FakeIndex()
        self.embedding = FakeEmbedding()

    def close(self) -> None:
        pass


def make_context(data_dir: Path, **settings: Any) -> tuple[TaskContext, FakeClients,
                                                          list[tuple[str, dict[str, Any]]]]:
    clients = FakeClients()
    enqueued: list[tuple[str, dict[str, Any]]] = []
    ctx = TaskContext(settings=WorkersSettings(**settings), clients=clients,  # type: ignore[arg-type]
                      data_dir=data_dir, enqueue=lambda name, kw: enqueued.append((name, kw)))
    return ctx, clients, enqueued
