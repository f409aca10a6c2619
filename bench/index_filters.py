"""Tag-filtered search at scale -> docs/benchmarks.md, section "index-filters".

n x 768 vectors of the embedding-like generator (tests/index/data.py `EmbeddingLike`) go into
the service's `FaissIndex` (IVF-PQ, float16 disk store, as bench/index_scale.py builds it),
with a tag on every 10th image (10%) and one on every 100th (1%) held by the index itself
(`set_tags`). Single queries on one thread, k=10, side by side in one process:

- unfiltered;
- filtered by naming the tag (`search(..., tags=[...])`: the index resolves the tag to its
  ids, their labels and a Faiss `IDSelectorBitmap`);
- filtered the way it was done before (`allowed_ids`: the tag's ids handed to the search,
  in-process here, so the catalog listing them and the JSON trip are not even counted;
  the parse of such a request body is timed apart).

Recall@10 of the filtered searches is against exact search over the tagged vectors.

    python bench/index_filters.py --n 1000000
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # single-query latency on one thread
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._knn import K, recall, timed
from bench._report import markdown_table, write_section
from services.index.schemas import SearchRequest
from services.index.store.faiss_backend import FaissIndex
from services.index.store.params import FaissParams
from tests.index.data import EmbeddingLike

MODEL = "bench:embedding-like"
TAGS = {"ten": 10, "hundred": 100}  # tag -> every how many images carry it
SETTINGS = ((32, 64), (16, 16))  # (nprobe, candidates per result re-ranked)


def timed_after_writes(index: FaissIndex, search: Any, xq: np.ndarray, x: np.ndarray
                       ) -> tuple[float, float]:
    """Single-query p50, p99 (ms) of `search` with one upsert (untimed) before each query:
    every cached filter is stale, as while ingest runs."""
    times = []
    for i, q in enumerate(xq):
        index.upsert(np.asarray([i], np.int64), x[i : i + 1], MODEL)
        t = time.perf_counter()
        search(q[None, :])
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def tags_for(ids: np.ndarray) -> tuple[np.ndarray, list[list[str]]]:
    """The ids among (m,) `ids` that carry a tag, and their tags (`TAGS`): every tagged id
    carries the first tag."""
    carry = ids[ids % min(TAGS.values()) == 0]
    return carry, [[t for t, every in TAGS.items() if i % every == 0] for i in carry.tolist()]


Tagged = dict[str, tuple[list[np.ndarray], list[np.ndarray]]]


def collect_tagged(tagged: Tagged, ids: np.ndarray, x: np.ndarray) -> None:
    """Keep the ids (m,) and vectors (m, d) of a chunk that carry each tag."""
    for tag, every in TAGS.items():
        keep = ids % every == 0
        tagged.setdefault(tag, ([], []))
        tagged[tag][0].append(ids[keep])
        tagged[tag][1].append(x[keep])


def tag_truth(tagged: Tagged, xq: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Per tag, its ids and the exact top-K (nq, K) of the (nq, d) queries among them."""
    truth = {}
    for tag, (id_parts, x_parts) in tagged.items():
        tids, tx = np.concatenate(id_parts), np.concatenate(x_parts)
        S = xq @ tx.T
        top = np.argsort(-S, axis=1)[:, :K]
        truth[tag] = {"ids": tids, "truth": tids[top]}
    return truth


def build(args: argparse.Namespace, xq: np.ndarray) -> tuple[FaissIndex, dict[str, Any]]:
    """The index with its tags, and per tag the exact top-K of the queries among its ids."""
    gen = EmbeddingLike(args.dim, clusters=max(100, args.n // 1000), seed=0)
    params = FaissParams(ivf_nlist=args.nlist, pq_m=args.pq_m, pq_nbits=8,
                         train_min=64 * args.nlist, train_points_per_list=64)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    index = FaissIndex("ivf_pq", params, store_dir=work)
    tagged: Tagged = {}
    for c in tqdm(range(gen.chunks(args.n)), desc="add", unit="chunk", mininterval=30):
        x = gen.base_chunk(c, args.n)
        ids = np.arange(c * gen.chunk, c * gen.chunk + len(x), dtype=np.int64)
        index.upsert(ids, x, MODEL)
        index.set_tags(*tags_for(ids))
        collect_tagged(tagged, ids, x)
    return index, tag_truth(tagged, xq)


def parse_ms(n_ids: int, dim: int) -> float:
    """Milliseconds to parse a search request body carrying `n_ids` allowed ids."""
    body = json.dumps({"vectors": [[0.0] * dim], "k": K,
                       "allowed_ids": list(range(0, 10 * n_ids, 10))})
    SearchRequest.model_validate_json(body)
    started = time.perf_counter()
    for _ in range(3):
        SearchRequest.model_validate_json(body)
    return (time.perf_counter() - started) / 3 * 1e3


def measure(args: argparse.Namespace) -> dict[str, Any]:
    gen = EmbeddingLike(args.dim, clusters=max(100, args.n // 1000), seed=0)
    xq = gen.queries(args.queries)
    started = time.monotonic()
    index, truth = build(args, xq)
    out: dict[str, Any] = {"n": args.n, "build_s": time.monotonic() - started, "rows": [],
                           "load": [os.getloadavg()[0]]}
    # One untimed pass of every query, unfiltered and filtered: the rows it re-ranks are in
    # the page cache and mapped for every row of the table alike, not only the later ones.
    for q in xq:
        index.search(q[None, :], K)
        for tag in TAGS:
            index.search(q[None, :], K, tags=[tag])
    for nprobe, rerank in SETTINGS:
        index.tune({"ivf_nprobe": nprobe, "pq_rerank_factor": rerank})
        p50, p99, _ = timed(lambda q: index.search(q, K)[1][0], xq)
        base = {"nprobe": nprobe, "rerank": rerank}
        out["rows"].append({**base, "what": "unfiltered", "p50": p50, "p99": p99})
        print(out["rows"][-1], flush=True)
        for tag, every in TAGS.items():
            t = truth[tag]
            p50, p99, found = timed(lambda q, tag=tag: index.search(q, K, tags=[tag])[1][0], xq)
            out["rows"].append({**base, "what": f"tag on 1/{every} of images, named",
                                "p50": p50, "p99": p99, "recall": recall(found, t["truth"]),
                                "ids": len(t["ids"])})
            print(out["rows"][-1], flush=True)
            p50, p99, found = timed(
                lambda q, t=t: index.search(q, K, allowed_ids=t["ids"])[1][0], xq)
            out["rows"].append({**base, "what": f"tag on 1/{every}, its ids as allowed_ids",
                                "p50": p50, "p99": p99, "recall": recall(found, t["truth"]),
                                "ids": len(t["ids"])})
            print(out["rows"][-1], flush=True)
        if (nprobe, rerank) == SETTINGS[0]:
            again = EmbeddingLike(args.dim, clusters=max(100, args.n // 1000),
                                  seed=0).base_chunk(0, args.n)[: len(xq)]
            p50, p99 = timed_after_writes(
                index, lambda q: index.search(q, K, tags=["ten"]), xq, again)
            out["rows"].append({**base, "what": "tag on 1/10, named, an upsert before each "
                                "query (filter patched)", "p50": p50, "p99": p99})
            print(out["rows"][-1], flush=True)
    out["parse_ms"] = parse_ms(len(truth["ten"]["ids"]), args.dim)
    out["tag_bytes"] = index.tags.nbytes
    out["load"].append(os.getloadavg()[0])
    return out


def report(args: argparse.Namespace, result: dict[str, Any]) -> str:
    rows = []
    for r in result["rows"]:
        base = next(x for x in result["rows"] if x["what"] == "unfiltered"
                    and x["nprobe"] == r["nprobe"] and x["rerank"] == r["rerank"])
        rows.append([r["nprobe"], r["rerank"], r["what"],
                     f"{r['recall']:.3f}" if "recall" in r else "-",
                     f"{r['p50']:.2f}", f"{r['p99']:.2f}", f"x{r['p50'] / base['p50']:.2f}"])
    ten = next(r["ids"] for r in result["rows"] if "ids" in r)
    return (
        f"{args.n:,} x {args.dim} vectors of the embedding-like generator in the service's "
        f"`FaissIndex` (IVF-PQ nlist={args.nlist}, PQ {args.pq_m}x8, float16 disk store), "
        f"built in {result['build_s'] / 60:.0f} min; a tag on every 10th image "
        f"({ten:,} ids) and one on every 100th, held by the index (`set_tags`; "
        f"{result['tag_bytes'] / 2**20:.0f} MB for both). {args.queries} held-out queries, "
        "one at a time on one thread, k=10; recall@10 of filtered searches against exact "
        "search over the tagged vectors; `vs unfiltered` = p50 over the unfiltered p50 of "
        "the same row group. `allowed_ids` rows hand the ids to the search in-process: the "
        "catalog listing them (20 s for a 10% tag at 10M rows, \"Catalog at scale\") and the "
        f"request body are not counted; parsing a search body with {ten:,} allowed ids alone "
        f"takes {result['parse_ms']:.0f} ms. Every query ran once, untimed, before the "
        "table (warm page cache and mapping for all rows alike). Load average (1 min) "
        f"{result['load'][0]:.1f} before the searches, {result['load'][1]:.1f} after, on "
        f"{os.cpu_count()} cores.\n\n"
        + markdown_table(["nprobe", "rerank", "query", "recall@10", "p50 (ms)", "p99 (ms)",
                          "vs unfiltered"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--nlist", type=int, default=2048)
    parser.add_argument("--pq-m", type=int, default=64)
    parser.add_argument("--work", help="directory of the float16 vector file (1.5 GB per "
                                       "million vectors; default: a temporary directory)")
    parser.add_argument("--dry-run", action="store_true", help="print, do not write the doc")
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="imgsearch-filters-") as tmp:
        args.work = args.work or tmp
        result = measure(args)
    body = report(args, result)
    print(body)
    if not args.dry_run:
        write_section("index-filters", f"Tag-filtered search at {args.n:,} vectors", body)


if __name__ == "__main__":
    main()
