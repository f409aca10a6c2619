"""In-process stand-ins of the services the gateway calls (catalog, index, embedding,
segmentation) and of the task queue, so the gateway's own logic runs in unit tests without
MariaDB, Redis or a model. Each speaks the part of its HTTP contract the gateway uses
(docs/api-internal.md), in memory, through `httpx.MockTransport`; the real-stack tests keep
checking the services themselves.

The embedding stand-in maps bytes to a fixed unit vector (a hash seeds it): the same bytes
always embed the same, and `Workers.ingest` does what the ingest worker does (vector upserted,
row `indexed`), so a search for an uploaded image finds it first with score 1.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from gateway.clients import Upstreams
from services.common.http import ServiceClient
from services.common.tags import tag_key

DIM = 8
MODEL = "standin-vit/0123456789ab"


def vector_of(data: bytes) -> list[float]:
    """(DIM,) unit vector, fixed per content."""
    seed = int.from_bytes(hashlib.sha256(data).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(DIM)
    return (v / np.linalg.norm(v)).astype(np.float32).tolist()


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat()


def _error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message,
                                                  "detail": None}})


def _file_bytes(request: httpx.Request) -> bytes:
    """The first multipart file of a request (the stand-ins read one image each)."""
    boundary = request.headers["content-type"].split("boundary=")[1].encode()
    for part in request.content.split(b"--" + boundary):
        head, _, body = part.partition(b"\r\n\r\n")
        if b'filename="' in head:
            return body[:-2]  # the part ends with \r\n
    return b""


@dataclass
class Catalog:
    images: dict[int, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[int, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)  # "METHOD /path" -> requests

    def add_user(self, username: str, password: str, role: str) -> None:
        self.users[username] = {"id": len(self.users) + 1, "username": username, "role": role,
                                "created_at": _now(), "last_login_at": None,
                                "token_version": 0}
        self.passwords[username] = password

    def create(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """A new pending row, or the row of the same sha256 with the tags given added."""
        for row in self.images.values():
            if row["sha256"] == body["sha256"]:
                row["tags"] = sorted(set(row.get("tags") or []) | set(body.get("tags") or []))
                return row, False
        image_id = len(self.images) + 1
        row = {**body, "id": image_id, "status": "pending", "thumbnail_key": None,
               "model_id": None, "error": None, "near_duplicate_of": None,
               "created_at": _now(), "updated_at": _now()}
        self.images[image_id] = row
        return row, True

    def handle(self, request: httpx.Request) -> httpx.Response:
        method, path = request.method, request.url.path
        self.calls[f"{method} {path}"] += 1
        body = json.loads(request.content) if request.content and method != "GET" else {}
        if method == "POST" and path == "/v1/images":
            row, created = self.create(body)
            return httpx.Response(201 if created else 200, json={"image": row, "created": created})
        if method == "POST" and path == "/v1/images/batch":
            results = [self.create(image) for image in body["images"]]
            return httpx.Response(200, json={"results": [
                {"image": row, "created": created} for row, created in results]})
        if match := re.fullmatch(r"/v1/images/(\d+)", path):
            row = self.images.get(int(match.group(1)))
            if row is None:
                return _error(404, "image_not_found", "no such image")
            return httpx.Response(200, json=row)
        if method == "GET" and path == "/v1/images":
            status = request.url.params.get("status")
            rows = sorted((r for r in self.images.values()
                           if status is None or r["status"] == status),
                          key=lambda r: -r["id"])
            limit = int(request.url.params.get("limit", 50))
            return httpx.Response(200, json={"images": rows[:limit], "total": len(rows),
                                             "next": None})
        if path == "/v1/images/lookup":
            rows = [self.images[i] for i in body["ids"] if i in self.images and (
                body.get("status") is None or self.images[i]["status"] == body["status"])]
            return httpx.Response(200, json={"images": rows})
        if path == "/v1/images/ids":
            ids = [r["id"] for r in self.images.values() if r["status"] == body["status"]
                   and set(body["tags"]) <= set(r["tags"])]
            return httpx.Response(200, json={"ids": ids})
        if path == "/v1/images/transition":
            changed = [i for i in body["ids"]
                       if i in self.images and self.images[i]["status"] in body["from"]]
            for i in changed:
                self.images[i]["status"] = body["to"]
            return httpx.Response(200, json={"changed": changed, "unchanged": [
                i for i in body["ids"] if i not in changed]})
        if path == "/v1/tags":
            counts: dict[str, int] = {}
            for row in self.images.values():
                for tag in row["tags"]:
                    counts[tag] = counts.get(tag, 0) + 1
            return httpx.Response(200, json={"tags": [{"name": t, "count": c}
                                                      for t, c in sorted(counts.items())]})
        if path == "/v1/stats":
            per: dict[str, int] = {}
            for row in self.images.values():
                per[row["status"]] = per.get(row["status"], 0) + 1
            return httpx.Response(200, json={"images": per, "total": len(self.images)})
        return self._jobs_and_users(method, path, body)

    def _jobs_and_users(self, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
        if method == "POST" and path == "/v1/jobs":
            job_id = len(self.jobs) + 1
            self.jobs[job_id] = {"id": job_id, "kind": body["kind"], "status": "queued",
                                 "total": body["total"], "done": 0, "failed": 0, "skipped": 0,
                                 "creator": body.get("creator"), "params": body.get("params"),
                                 "error": None, "created_at": _now(), "started_at": None,
                                 "finished_at": None, "items_failed": [], "items_skipped": []}
            return httpx.Response(201, json=self.jobs[job_id])
        if match := re.fullmatch(r"/v1/jobs/(\d+)(/items|/finish)?", path):
            job = self.jobs.get(int(match.group(1)))
            if job is None:
                return _error(404, "job_not_found", "no such job")
            if match.group(2) == "/finish":
                job.update(status=body["status"], finished_at=_now())
            return httpx.Response(200, json=job)
        if path == "/v1/users/verify":
            name = body["username"]
            if self.passwords.get(name) != body["password"]:
                return _error(401, "invalid_credentials", "wrong username or password")
            return httpx.Response(200, json=self.users[name])
        if method == "GET" and path == "/v1/users":
            return httpx.Response(200, json={"users": list(self.users.values())})
        if match := re.fullmatch(r"/v1/users/([^/]+)", path):
            user = self.users.get(match.group(1))
            if user is None:
                return _error(404, "user_not_found", "no such user")
            if method == "PATCH":
                user.update(role=body.get("role", user["role"]),
                            token_version=user["token_version"] + 1)
            return httpx.Response(200, json=user)
        return _error(404, "not_found", f"the catalog stand-in has no {method} {path}")


@dataclass
class Index:
    vectors: dict[int, list[float]] = field(default_factory=dict)
    # Each image's tags as the index holds them (PUT /v1/tags, carried by the ingest).
    tags: dict[int, set[str]] = field(default_factory=dict)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/stats":
            return httpx.Response(200, json={
                "count": len(self.vectors), "dim": DIM, "model": MODEL, "type": "flat",
                "tombstones": 0, "bytes": 4 * DIM * len(self.vectors), "disk_bytes": 0,
                "trained": True, "params": {}, "generation": "g1", "staging": None})
        body = json.loads(request.content)
        if path == "/v1/vectors/get":
            ids = [i for i in body["ids"] if i in self.vectors]
            return httpx.Response(200, json={"ids": ids,
                                             "vectors": [self.vectors[i] for i in ids]})
        if path == "/v1/tags":
            for image_id, names in zip(body["ids"], body["tags"], strict=True):
                self.tags[image_id] = {tag_key(t) for t in names}
            return httpx.Response(200, json={"updated": len(body["ids"])})
        if path == "/v1/search":
            allowed = body.get("allowed_ids")
            wanted = {tag_key(t) for t in body.get("tags") or ()}
            ids = [i for i in self.vectors if (allowed is None or i in allowed)
                   and wanted <= self.tags.get(i, set())]
            q = np.asarray(body["vectors"][0], dtype=np.float32)
            scored = sorted(((float(np.dot(q, self.vectors[i])), i) for i in ids), reverse=True)
            top = scored[:body["k"]]
            return httpx.Response(200, json={"results": [{"ids": [i for _, i in top],
                                                          "scores": [s for s, _ in top]}]})
        return _error(404, "not_found", f"the index stand-in has no {path}")


def embedding_handle(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/v1/info":
        return httpx.Response(200, json={
            "model": MODEL, "architecture": "standin", "dim": DIM, "patch_size": 14,
            "num_registers": 0, "random_weights": True, "weights_sha256": "0" * 64,
            "preprocessing": {"mode": "resize", "image_size": 224, "mean": [0.5] * 3,
                              "std": [0.5] * 3}})
    data = _file_bytes(request)
    return httpx.Response(200, json={"model": MODEL, "dim": DIM, "count": 1,
                                     "vectors": [vector_of(data)]})


def _form_field(request: httpx.Request, name: str) -> str | None:
    match = re.search(rb'name="' + name.encode() + rb'"\r\n\r\n(.*?)\r\n--', request.content,
                      re.S)
    return match.group(1).decode() if match else None


@dataclass
class Segmentation:
    """A mask of the image's left half, whatever the clicks; the encoder "cache" remembers
    each image's size per caller scope, so a click by hash works after the bytes came once
    (409 `image_not_cached` before, as the real service answers)."""

    cache: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/info":
            return _error(503, "not_ready", "the segmentation stand-in has no info")
        scope = _form_field(request, "scope") or ""
        sha = _form_field(request, "image_sha256")
        if sha is not None:
            if (scope, sha) not in self.cache:
                return _error(409, "image_not_cached", "send the image again")
            width, height = self.cache[scope, sha]
            cached = True
        else:
            data = _file_bytes(request)
            sha = hashlib.sha256(data).hexdigest()
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
            cached = (scope, sha) in self.cache
            self.cache[scope, sha] = (width, height)
        if request.url.path == "/v1/encode":
            return httpx.Response(200, json={"image_sha256": sha, "width": width,
                                             "height": height, "encoder_cached": cached,
                                             "model": "standin-sam"})
        mask = np.zeros((height, width), dtype=np.uint8)
        mask[:, : width // 2] = 255
        png = io.BytesIO()
        Image.fromarray(mask).save(png, format="PNG")
        return httpx.Response(200, json={
            "mask_png_b64": base64.b64encode(png.getvalue()).decode(), "mask_rle": None,
            "box": [0, 0, width // 2, height], "score": 0.9, "width": width,
            "height": height, "candidates": None, "low_res_mask_b64": None,
            "selection_id": None, "image_sha256": sha, "encoder_cached": cached,
            "model": "standin-sam"})


@dataclass
class SentTask:
    name: str
    kwargs: dict[str, Any]


class Producer:
    """The task queue's producer: records what the gateway sends."""

    class _Conf:
        task_default_queue = "imgsearch"
        imgsearch_ingest_batch = 8

    def __init__(self) -> None:
        self.conf = self._Conf()
        self.sent: list[SentTask] = []

    def send_task(self, name: str, *, kwargs: dict[str, Any], countdown: float | None,
                  queue: str) -> Any:
        self.sent.append(SentTask(name, kwargs))
        return type("Result", (), {"id": f"task-{len(self.sent)}"})()

    def close(self) -> None:
        pass


@dataclass
class StandIns:
    catalog: Catalog = field(default_factory=Catalog)
    index: Index = field(default_factory=Index)
    segmentation: Segmentation = field(default_factory=Segmentation)
    producer: Producer = field(default_factory=Producer)

    def upstreams(self) -> Upstreams:
        def client(name: str, port: int, handler: Any) -> ServiceClient:
            return ServiceClient(name, f"http://127.0.0.1:{port}", "internal", attempts=1,
                                 transport=httpx.MockTransport(handler))

        return Upstreams(catalog=client("catalog", 8104, self.catalog.handle),
                         index=client("index", 8103, self.index.handle),
                         embedding=client("embedding", 8101, embedding_handle),
                         segmentation=client("segmentation", 8102, self.segmentation.handle))

    def ingest(self, images_dir: Path) -> None:
        """What the ingest worker does with every queued image: vector in, row indexed."""
        for task in self.producer.sent:
            for image_id in task.kwargs.get("image_ids") or []:
                row = self.catalog.images[image_id]
                data = (images_dir / row["storage_key"]).read_bytes()
                self.index.vectors[image_id] = vector_of(data)
                self.index.tags[image_id] = {tag_key(t) for t in row.get("tags") or ()}
                row.update(status="indexed", model_id=MODEL)
