"""The Milvus backend: the same `VectorIndex` over a Milvus collection (pymilvus), for
galleries that outgrow one machine; tested with milvus-lite (`MilvusClient("file.db")`).

Durability is Milvus's own: no write-ahead log here; `snapshot()` flushes. The model id and
dimension live in a small `<collection>_meta` collection beside the vectors.

Tags: every id's tags are a JSON list in `<collection>_tags` (an id may carry tags before
its vector arrives), and copied onto its vector row as the dynamic field `tags`, so a
filtered search is one Milvus search with `json_contains_all(tags, [...])`: no id list
travels. Setting an id's tags rewrites its vector row; an upsert copies the tags held.

Filtered search, as in the Faiss backend: allowed sets up to `filter_exact_max` ids are
fetched and brute-forced (exact); larger ones go through Milvus's filter, and a query that
comes back short is answered exactly. A named tag is first asked for its ids (one query,
limited to `filter_exact_max` + 1): a tag that small is brute-forced the same way. Milvus's
graph index (milvus-lite's AUTOINDEX, built in the background once a segment is sealed)
under a selective filter returns fewer than k hits, or k hits that are not the best: a 1%
tag named at 50,000 vectors recalled 0.68 before (bench/index_milvus.py).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.index.store.errors import (
    DimensionMismatch,
    IndexUnavailable,
    InvalidIndexType,
    ModelMismatch,
)
from services.index.store.exact import PAD_SCORE, search_exact
from services.index.store.params import check_type
from services.index.store.protocol import Ids, IndexStats, Vectors

logger = logging.getLogger(__name__)

_MILVUS_INDEX = {"flat": "FLAT", "hnsw": "HNSW", "ivf_sq8": "IVF_SQ8", "ivf_pq": "IVF_PQ"}
_MAX_LIMIT = 16384  # Milvus's largest top-k


def _tags_expr(tags: list[str]) -> str:
    """A Milvus filter: the row's `tags` hold every one of `tags`."""
    return f"json_contains_all(tags, {json.dumps(sorted(set(tags)))})"


class MilvusIndex:
    """A thread-safe `VectorIndex` over one Milvus collection."""

    def __init__(self, uri: str, collection: str, *, index_type: str = "flat",
                 pinned_model: str | None = None, pinned_dim: int | None = None,
                 filter_exact_max: int = 20000) -> None:
        from pymilvus import MilvusClient

        try:
            self._client = MilvusClient(uri)
        except Exception as exc:
            raise IndexUnavailable(f"Milvus at {uri} cannot be reached: {exc}") from exc
        self.uri = uri
        self.collection = collection
        self._meta_name = f"{collection}_meta"
        self._tags_name = f"{collection}_tags"
        self._type = check_type(index_type)
        self._params: dict[str, Any] = {}
        self._pinned_model, self._pinned_dim = pinned_model, pinned_dim
        self.filter_exact_max = filter_exact_max
        self._lock = threading.RLock()
        self._model: str | None = None
        self._dim: int | None = None
        self._load_meta()

    # -- metadata ------------------------------------------------------------------------
    def _load_meta(self) -> None:
        if not self._client.has_collection(self._meta_name):
            return
        # A Milvus server keeps collections released after it restarts (a cluster, after
        # a release elsewhere): searches and gets need them loaded. milvus-lite's embedded
        # mode loads them by itself.
        for name in (self._meta_name, self.collection, self._tags_name):
            if self._client.has_collection(name):
                self._client.load_collection(name)
        rows = self._client.get(self._meta_name, ids=[0])
        if rows:
            meta = json.loads(rows[0]["meta"])
            self._model, self._dim = meta.get("model"), meta.get("dim")
            self._type = meta.get("type", self._type)

    def _save_meta(self) -> None:
        if not self._client.has_collection(self._meta_name):
            self._client.create_collection(self._meta_name, dimension=2, auto_id=False,
                                           id_type="int", metric_type="IP")
        meta = json.dumps({"model": self._model, "dim": self._dim, "type": self._type})
        self._client.upsert(self._meta_name, [{"id": 0, "vector": [0.0, 0.0], "meta": meta}])

    def _create(self, dim: int) -> None:
        if self._client.has_collection(self.collection):
            self._client.drop_collection(self.collection)
        self._client.create_collection(self.collection, dimension=dim, auto_id=False,
                                       id_type="int", metric_type="IP")

    # -- protocol ------------------------------------------------------------------------
    @property
    def model(self) -> str | None:
        return self._model or self._pinned_model

    @property
    def dim(self) -> int | None:
        return self._dim or self._pinned_dim

    @property
    def count(self) -> int:
        with self._lock:
            if self._dim is None or not self._client.has_collection(self.collection):
                return 0
            rows = self._client.query(self.collection, filter="",
                                      output_fields=["count(*)"])
            return int(rows[0]["count(*)"])

    def check(self, model: str | None, dim: int) -> None:
        pinned = self._pinned_model
        if pinned is not None and model is not None and model != pinned:
            raise ModelMismatch(f"this index takes vectors of model {pinned}, not {model}",
                                detail={"index_model": pinned, "given_model": model})
        if self._pinned_dim is not None and dim != self._pinned_dim:
            raise DimensionMismatch(f"this index takes {self._pinned_dim}-d vectors, not {dim}-d",
                                    detail={"index_dim": self._pinned_dim, "given_dim": dim})
        if self.count == 0:
            return
        if model is not None and self._model is not None and model != self._model:
            raise ModelMismatch(f"the index holds vectors of model {self._model}, not {model}",
                                detail={"index_model": self._model, "given_model": model})
        if dim != self._dim:
            raise DimensionMismatch(f"the index holds {self._dim}-d vectors, not {dim}-d",
                                    detail={"index_dim": self._dim, "given_dim": dim})

    def upsert(self, ids: Ids, vectors: Vectors, model: str) -> None:
        if not len(ids):
            return
        dim = int(vectors.shape[1])
        with self._lock:
            self.check(model, dim)
            if self._dim != dim or not self._client.has_collection(self.collection):
                self._create(dim)
            self._model, self._dim = model, dim
            self._save_meta()
            # A batch naming one id twice: the last vector wins, as in the Faiss backend.
            last = {int(i): row for row, i in enumerate(ids.tolist())}
            held = self._held_tags(list(last))
            rows = [{"id": i, "vector": vectors[r].tolist(), "tags": held.get(i, [])}
                    for i, r in last.items()]
            self._client.upsert(self.collection, rows)

    # -- tags ----------------------------------------------------------------------------
    def _held_tags(self, ids: list[int]) -> dict[int, list[str]]:
        if not ids or not self._client.has_collection(self._tags_name):
            return {}
        rows = self._client.get(self._tags_name, ids=ids, output_fields=["id", "tags"])
        return {int(r["id"]): list(r.get("tags") or []) for r in rows}

    def set_tags(self, ids: Ids, tags: list[list[str]]) -> None:
        if not len(ids):
            return
        with self._lock:
            if not self._client.has_collection(self._tags_name):
                self._client.create_collection(self._tags_name, dimension=2, auto_id=False,
                                               id_type="int", metric_type="IP")
            last = {int(i): sorted(set(t)) for i, t in zip(ids.tolist(), tags, strict=True)}
            self._client.upsert(self._tags_name, [
                {"id": i, "vector": [0.0, 0.0], "tags": t} for i, t in last.items()])
            if self._dim is None or not self._client.has_collection(self.collection):
                return
            rows = self._client.get(self.collection, ids=list(last),
                                    output_fields=["id", "vector"])
            if rows:
                self._client.upsert(self.collection, [
                    {"id": int(r["id"]), "vector": list(r["vector"]), "tags": last[int(r["id"])]}
                    for r in rows])

    def tags_of(self, ids: Ids) -> list[list[str]]:
        with self._lock:
            held = self._held_tags(ids.tolist())
        return [sorted(held.get(int(i), [])) for i in ids.tolist()]

    def tag_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._lock:
            if not self._client.has_collection(self._tags_name):
                return counts
            iterator = self._client.query_iterator(self._tags_name, batch_size=1000,
                                                   filter="id >= 0", output_fields=["tags"])
            while batch := iterator.next():
                for row in batch:
                    for tag in row.get("tags") or []:
                        counts[tag] = counts.get(tag, 0) + 1
            iterator.close()
        return counts

    def _few_tagged_ids(self, tags: list[str]) -> Ids | None:
        """Ids of vectors carrying every one of `tags` if they are few enough to brute-force
        (at most `filter_exact_max`, and what one Milvus query returns), else None."""
        limit = min(self.filter_exact_max, _MAX_LIMIT - 1) + 1
        rows = self._client.query(self.collection, filter=_tags_expr(tags),
                                  output_fields=["id"], limit=limit)
        if len(rows) >= limit:
            return None
        return np.unique(np.asarray([int(r["id"]) for r in rows], np.int64))

    def _tagged_ids(self, tags: list[str]) -> Ids:
        """Ids of vectors carrying every one of `tags` (the exact fallback's set)."""
        iterator = self._client.query_iterator(self.collection, batch_size=1000,
                                               filter=_tags_expr(tags), output_fields=["id"])
        found: list[int] = []
        while batch := iterator.next():
            found.extend(int(r["id"]) for r in batch)
        iterator.close()
        return np.unique(np.asarray(found, np.int64))

    def remove(self, ids: Ids) -> int:
        """Remove the vectors of `ids` and their tags (their images are gone)."""
        with self._lock:
            if len(ids) and self._client.has_collection(self._tags_name):
                self._client.delete(self._tags_name, ids=np.unique(ids).tolist())
            if self._dim is None or not len(ids):
                return 0
            present = self._client.get(self.collection, ids=np.unique(ids).tolist(),
                                       output_fields=["id"])
            found = [int(row["id"]) for row in present]
            if found:
                self._client.delete(self.collection, ids=found)
            return len(found)

    def search(self, queries: Vectors, k: int, allowed_ids: Ids | None = None,
               tags: list[str] | None = None) -> tuple[NDArray[np.float32], Ids]:
        nq = len(queries)
        D = np.full((nq, k), PAD_SCORE, dtype=np.float32)
        I = np.full((nq, k), -1, dtype=np.int64)
        with self._lock:
            if self._dim is None or not nq:
                return D, I
            if queries.shape[1] != self._dim:
                raise DimensionMismatch(f"the index holds {self._dim}-d vectors, "
                                        f"not {queries.shape[1]}-d",
                                        detail={"index_dim": self._dim,
                                                "given_dim": int(queries.shape[1])})
            expr = ""
            allowed = None
            if allowed_ids is not None:
                allowed = np.unique(allowed_ids)
                if not len(allowed):
                    return D, I
                if tags and len(allowed) <= self.filter_exact_max:
                    held = self._held_tags(allowed.tolist())
                    allowed = allowed[[set(tags) <= set(held.get(int(i), []))
                                       for i in allowed.tolist()]]
                    if not len(allowed):
                        return D, I
                if len(allowed) <= self.filter_exact_max:
                    return self._search_exact(queries, k, allowed)
                expr = f"id in {allowed.tolist()}"
            elif tags:
                few = self._few_tagged_ids(tags)
                if few is not None:
                    return self._search_exact(queries, k, few) if len(few) else (D, I)
            if tags:
                expr = " and ".join(e for e in (expr, _tags_expr(tags)) if e)
            hits = self._client.search(self.collection, data=queries.tolist(),
                                       limit=min(k, _MAX_LIMIT), filter=expr,
                                       search_params={"metric_type": "IP"})
        for qi, row in enumerate(hits):
            for j, hit in enumerate(row):
                D[qi, j] = hit["distance"]
                I[qi, j] = hit["id"]
        if tags and ((I >= 0).sum(axis=1) < k).any():
            # Short under the filter (see the module docstring): the tagged ids, only now.
            with self._lock:
                tagged = self._tagged_ids(tags)
            allowed = tagged if allowed is None else np.intersect1d(allowed, tagged)
            if not len(allowed):
                return D, I
        if allowed is not None:
            found = (I >= 0).sum(axis=1)
            short = np.flatnonzero(found < min(k, len(allowed)))
            if len(short):
                with self._lock:
                    d, i = self._search_exact(queries[short], k, allowed)
                better = (i >= 0).sum(axis=1) > found[short]  # only where more exist
                D[short[better]], I[short[better]] = d[better], i[better]
        return D, I

    def _search_exact(self, queries: Vectors, k: int, allowed: Ids
                      ) -> tuple[NDArray[np.float32], Ids]:
        """(nq, d) queries over the stored vectors of the (m,) `allowed` ids, by brute force
        (the caller holds the lock)."""
        parts = [self._get_locked(allowed[at : at + _MAX_LIMIT])
                 for at in range(0, len(allowed), _MAX_LIMIT)]
        ids = np.concatenate([p[0] for p in parts])
        vectors = np.concatenate([p[1] for p in parts])
        return search_exact(np.ascontiguousarray(queries, np.float32), vectors, ids, k)

    def get(self, ids: Ids) -> tuple[Ids, Vectors]:
        with self._lock:
            return self._get_locked(ids)

    def _get_locked(self, ids: Ids) -> tuple[Ids, Vectors]:
        if self._dim is None or not len(ids):
            return np.empty(0, np.int64), np.empty((0, self._dim or 0), np.float32)
        rows = self._client.get(self.collection, ids=ids.tolist())
        by_id = {int(r["id"]): r["vector"] for r in rows}
        found = [i for i in ids.tolist() if i in by_id]
        vectors = np.asarray([by_id[i] for i in found], dtype=np.float32).reshape(
            len(found), self._dim)
        return np.asarray(found, dtype=np.int64), vectors

    def ids(self, after: int, limit: int) -> Ids:
        with self._lock:
            if self._dim is None:
                return np.empty(0, np.int64)
            # Query results come in no promised order: collect, sort, cut.
            iterator = self._client.query_iterator(self.collection, batch_size=1000,
                                                   filter=f"id > {int(after)}",
                                                   output_fields=["id"])
            found: list[int] = []
            while True:
                batch = iterator.next()
                if not batch:
                    break
                found.extend(int(r["id"]) for r in batch)
            iterator.close()
        return np.sort(np.asarray(found, dtype=np.int64))[:limit]

    def stats(self) -> IndexStats:
        count = self.count
        return IndexStats(count=count, dim=self.dim, model=self.model, type=self._type,
                          bytes=count * 4 * (self._dim or 0), params=dict(self._params))

    def rebuild(self, index_type: str, params: dict[str, Any]) -> None:
        """Re-create the collection's vector index as `index_type` (Milvus builds it)."""
        check_type(index_type)
        with self._lock:
            if self._dim is not None and self._client.has_collection(self.collection):
                index_params = self._client.prepare_index_params()
                index_params.add_index(field_name="vector", index_type=_MILVUS_INDEX[index_type],
                                       metric_type="IP", params=params)
                try:
                    self._client.release_collection(self.collection)
                    self._client.drop_index(self.collection, "vector")
                    self._client.create_index(self.collection, index_params)
                except Exception as exc:
                    raise InvalidIndexType(f"Milvus refused index {index_type}: {exc}") from exc
                finally:
                    self._client.load_collection(self.collection)
            self._type, self._params = index_type, dict(params)
            if self._dim is not None:
                self._save_meta()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            if self._dim is not None:
                self._client.flush(self.collection)
        return {"count": self.count, "path": self.uri, "seq": None}

    def start(self) -> None:
        """Milvus maintains itself: nothing to start."""

    def drop(self) -> None:
        """Delete the collection (a discarded staging or replaced live generation)."""
        with self._lock:
            for name in (self.collection, self._meta_name, self._tags_name):
                if self._client.has_collection(name):
                    self._client.drop_collection(name)

    def close(self, snapshot: bool = True) -> None:
        if snapshot:
            self.snapshot()
        self._client.close()
