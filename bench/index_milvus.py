"""Tag-filtered search on the Milvus backend -> docs/benchmarks.md, section "index-milvus".

n x 768 vectors of the embedding-like generator (tests/index/data.py `EmbeddingLike`) go
through the service's `MilvusIndex` into milvus-lite, embedded (a file URI: the server runs
in this process) and as its gRPC server (`python -m milvus_lite server`: a server URI, the
way a Milvus cluster is reached), with the tags of bench/index_filters.py (a tag on every
10th image, one on every 100th) set through `set_tags`. Single queries on one thread, k=10,
side by side for each URI:

- unfiltered;
- filtered by naming the tag: one Milvus search with `json_contains_all(tags, [...])` on
  the rows' `tags` (a query that comes back short is completed exactly: counted);
- filtered the way it was done before: the tag's ids as `allowed_ids` (up to
  `filter_exact_max` ids are fetched and brute-forced).

Recall@10 against exact search (over the tagged vectors for filtered rows). Then what a
tag change costs: `set_tags` on a batch of ids rewrites their vector rows; an upsert of the
same vectors, and whether their tags are still there after it.

milvus-lite evaluates a JSON filter row by row in Python: a named tag costs time in
proportion to n, so the defaults are small.

    python bench/index_milvus.py --n 100000 --queries 20
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # single-query latency on one thread
os.environ.setdefault("OMP_NUM_THREADS", "1")  # milvus-lite's Faiss HNSW, also in its server

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._knn import K, merge_truth, recall, timed
from bench._report import markdown_table, write_section
from bench.index_filters import MODEL, TAGS, Tagged, collect_tagged, parse_ms, tag_truth, tags_for
from services.index.config import IndexSettings
from services.index.store.milvus_backend import MilvusIndex
from tests.helpers.procs import MilvusServer
from tests.index.data import EmbeddingLike

BATCH = 5000  # rows per upsert: pymilvus carries them as Python lists


def fill(index: MilvusIndex, gen: EmbeddingLike, n: int, xq: np.ndarray
         ) -> tuple[dict[str, Any], dict[str, float]]:
    """Upsert n vectors and their tags in batches; per tag its ids and exact top-K, and the
    exact top-K over all ("all"); seconds spent in upsert, set_tags and the final flush."""
    tagged: Tagged = {}
    D = np.full((len(xq), K), -np.inf, np.float32)
    I = np.full((len(xq), K), -1, np.int64)
    spent = {"upsert": 0.0, "set_tags": 0.0}
    for c in range(gen.chunks(n)):
        x = gen.base_chunk(c, n)
        for at in range(0, len(x), BATCH):
            xb = x[at : at + BATCH]
            ids = np.arange(c * gen.chunk + at, c * gen.chunk + at + len(xb), dtype=np.int64)
            started = time.perf_counter()
            index.upsert(ids, xb, MODEL)
            spent["upsert"] += time.perf_counter() - started
            started = time.perf_counter()
            index.set_tags(*tags_for(ids))
            spent["set_tags"] += time.perf_counter() - started
            collect_tagged(tagged, ids, xb)
            D, I = merge_truth(D, I, xq, xb, ids=ids)
        print(f"{min(n, (c + 1) * gen.chunk):,} rows: {spent}", flush=True)
    started = time.perf_counter()
    index.snapshot()  # a flush: milvus-lite seals the segment and builds its HNSW
    spent["flush"] = time.perf_counter() - started
    return {**tag_truth(tagged, xq), "all": {"truth": I}}, spent


def counting_short(index: MilvusIndex) -> dict[str, int]:
    """Count the named-tag searches that came back short and were completed exactly (the
    backend resolves the tag's ids only then)."""
    count = {"short": 0}
    resolve = index._tagged_ids

    def counted(tags: list[str]) -> Any:
        count["short"] += 1
        return resolve(tags)

    index._tagged_ids = counted  # type: ignore[method-assign]
    return count


def tag_change(index: MilvusIndex, n: int, batch: int) -> dict[str, Any]:
    """Milliseconds to tag `batch` untagged ids (their vector rows rewritten), to upsert
    the same vectors again, to clear the tag; whether the tags survived the upsert and a
    search naming the tag finds them."""
    ids = np.arange(5, n, 10, dtype=np.int64)[:batch]  # no tag of TAGS on these
    _, x = index.get(ids)
    out: dict[str, Any] = {"batch": len(ids)}
    started = time.perf_counter()
    index.set_tags(ids, [["changed"]] * len(ids))
    out["tag_ms"] = (time.perf_counter() - started) * 1e3
    started = time.perf_counter()
    index.upsert(ids, x, MODEL)
    out["upsert_ms"] = (time.perf_counter() - started) * 1e3
    kept = index.tags_of(ids)
    _, I = index.search(x[:20], K, tags=["changed"])
    out["kept"] = all(t == ["changed"] for t in kept) and bool((I[:, 0] == ids[:20]).all())
    started = time.perf_counter()
    index.set_tags(ids, [[]] * len(ids))
    out["clear_ms"] = (time.perf_counter() - started) * 1e3
    return out


def measure(uri: str, args: argparse.Namespace, xq: np.ndarray) -> dict[str, Any]:
    gen = EmbeddingLike(args.dim, clusters=max(100, args.n // 1000), seed=0)
    index = MilvusIndex(uri, "bench", filter_exact_max=IndexSettings().filter_exact_max)
    try:
        started = time.monotonic()
        truth, spent = fill(index, gen, args.n, xq)
        out: dict[str, Any] = {"build_s": time.monotonic() - started, "spent": spent,
                               "load": [os.getloadavg()[0]], "rows": []}
        short = counting_short(index)
        p50, p99, found = timed(lambda q: index.search(q, K)[1][0], xq)
        out["rows"].append({"what": "unfiltered", "p50": p50, "p99": p99,
                            "recall": recall(found, truth["all"]["truth"])})
        print(out["rows"][-1], flush=True)
        for tag, every in TAGS.items():
            t = truth[tag]
            short["short"] = 0
            p50, p99, found = timed(lambda q, tag=tag: index.search(q, K, tags=[tag])[1][0], xq)
            out["rows"].append({"what": f"tag on 1/{every} of images, named", "p50": p50,
                                "p99": p99, "recall": recall(found, t["truth"]),
                                "short": short["short"], "ids": len(t["ids"]),
                                "outside": int((~np.isin(found, t["ids"])).sum())})
            print(out["rows"][-1], flush=True)
            p50, p99, found = timed(
                lambda q, t=t: index.search(q, K, allowed_ids=t["ids"])[1][0], xq)
            out["rows"].append({"what": f"tag on 1/{every}, its ids as allowed_ids",
                                "p50": p50, "p99": p99, "recall": recall(found, t["truth"]),
                                "ids": len(t["ids"])})
            print(out["rows"][-1], flush=True)
        out["change"] = tag_change(index, args.n, args.change)
        print(out["change"], flush=True)
        out["load"].append(os.getloadavg()[0])
        return out
    finally:
        index.close(snapshot=False)


def report(args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> str:
    rows = []
    for where, result in results.items():
        base = result["rows"][0]["p50"]
        for r in result["rows"]:
            what = r["what"] + (f" ({r['short']} of {args.queries} short, completed exactly)"
                                if r.get("short") else "") + (
                f", **{r['outside']} hits without the tag**" if r.get("outside") else "")
            rows.append([where, what, f"{r['recall']:.3f}", f"{r['p50']:.1f}",
                         f"{r['p99']:.1f}", f"x{r['p50'] / base:.2f}"])
    ten = next(r["ids"] for r in next(iter(results.values()))["rows"] if "ids" in r)
    builds = "; ".join(
        f"{where} {r['build_s'] / 60:.1f} min (upsert {r['spent']['upsert']:.0f} s, set_tags "
        f"{r['spent']['set_tags']:.0f} s, flush {r['spent']['flush']:.0f} s), load average "
        f"(1 min) {r['load'][0]:.1f} before the searches and {r['load'][1]:.1f} after"
        for where, r in results.items())
    changes = "; ".join(
        f"{where}: tagging {c['batch']:,} untagged ids took {c['tag_ms']:.0f} ms, upserting "
        f"their vectors again {c['upsert_ms']:.0f} ms, clearing the tag {c['clear_ms']:.0f} ms; "
        + ("their tags were there after the upsert and a search naming the tag found them"
           if c["kept"] else "**their tags were not all there after the upsert**")
        for where, c in ((w, r["change"]) for w, r in results.items()))
    return (
        f"{args.n:,} x {args.dim} vectors of the embedding-like generator through the "
        "service's `MilvusIndex` into milvus-lite (pure Python; its AUTOINDEX is a Faiss HNSW, "
        "M=16, efSearch=64), embedded (a file URI)"
        + (" and as its gRPC server (`python -m milvus_lite server`, a server URI) on this "
           "machine" if "server" in results else "")
        + "; a tag on every 10th image "
        f"({ten:,} ids) and one on every 100th, set through `set_tags`. Loading: {builds}. "
        f"{args.queries} held-out queries (p99 of {args.queries}: about the slowest), one at a "
        "time on one thread, k=10; recall@10 "
        "against exact search (over the tagged vectors for filtered rows); `vs unfiltered` = "
        "p50 over the unfiltered p50 of the same URI. A named tag is one Milvus search with "
        "`json_contains_all(tags, [...])` (a query that comes back short is completed by an "
        "exact search over the tag's ids: counted); "
        + ("every hit of a named tag carried it; " if not any(
            r.get("outside") for result in results.values() for r in result["rows"]) else "")
        + "`allowed_ids` rows hand the tag's ids "
        f"in-process, up to `filter_exact_max` ({IndexSettings().filter_exact_max:,}) "
        "fetched and brute-forced; parsing a search body with "
        f"{ten:,} allowed ids takes {parse_ms(ten, args.dim):.1f} ms more, not counted. "
        f"A tag change rewrites vector rows: {changes}.\n\n"
        + markdown_table(["URI", "query", "recall@10", "p50 (ms)", "p99 (ms)",
                          "vs unfiltered"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--change", type=int, default=1000, help="ids per tag change")
    parser.add_argument("--no-server", action="store_true",
                        help="only the embedded URI, not milvus-lite's gRPC server")
    parser.add_argument("--dry-run", action="store_true", help="print, do not write the doc")
    args = parser.parse_args()
    xq = EmbeddingLike(args.dim, clusters=max(100, args.n // 1000), seed=0).queries(
        args.queries)
    results = {}
    with tempfile.TemporaryDirectory(prefix="imgsearch-milvus-") as tmp:
        results["embedded"] = measure(str(Path(tmp) / "milvus.db"), args, xq)
        if not args.no_server:
            server = MilvusServer(Path(tmp) / "server", Path(tmp) / "server.log")
            server.start()
            try:
                results["server"] = measure(server.uri, args, xq)
            finally:
                server.kill()
    body = report(args, results)
    print(body)
    if not args.dry_run:
        write_section("index-milvus", f"Tag-filtered search on Milvus at {args.n:,} vectors",
                      body)


if __name__ == "__main__":
    main()
