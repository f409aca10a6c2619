"""Single-query latency of the re-ranking read path -> docs/benchmarks.md, section
"index-rerank".

n x 768 vectors of the embedding-like generator (tests/index/data.py `EmbeddingLike`) in the
service's `FaissIndex` (IVF-PQ, float16 disk store, as bench/index_scale.py builds it; the
exact top-10 of the queries gathered chunk by chunk). Then, one query at a time on one
thread, k=10, for a few nprobe x rerank settings, side by side on the same index and
queries: re-ranking's candidate rows gathered by `pread` per row (the plain path) and from
the read-only mapping of the file (`vector_reads: mmap`). Recall@10 against exact search.

    python bench/index_rerank.py --n 1000000
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # single-query latency on one thread
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._knn import K, merge_truth, recall, timed
from bench._report import markdown_table, write_section
from services.index.store.faiss_backend import FaissIndex
from services.index.store.params import FaissParams
from tests.index.data import EmbeddingLike

MODEL = "bench:embedding-like"
SETTINGS = ((16, 16), (32, 16), (32, 64), (64, 64))  # (nprobe, candidates per result)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    gen = EmbeddingLike(args.dim, clusters=max(100, args.n // 1000), seed=0)
    xq = gen.queries(args.queries)
    params = FaissParams(ivf_nlist=args.nlist, pq_m=args.pq_m, pq_nbits=8,
                         train_min=64 * args.nlist, train_points_per_list=64)
    index = FaissIndex("ivf_pq", params, store_dir=Path(args.work))
    D = np.full((len(xq), K), -np.inf, dtype=np.float32)
    I = np.full((len(xq), K), -1, dtype=np.int64)
    started = time.monotonic()
    for c in tqdm(range(gen.chunks(args.n)), desc="add", unit="chunk", mininterval=30):
        x = gen.base_chunk(c, args.n)
        first = c * gen.chunk
        index.upsert(np.arange(first, first + len(x), dtype=np.int64), x, MODEL)
        D, I = merge_truth(D, I, xq, x, first)
    out: dict[str, Any] = {"build_s": time.monotonic() - started, "rows": []}
    rowfile = index._store._file if index._store is not None else None
    assert rowfile is not None
    # One untimed pass of every query at the most candidates, each way: every row a
    # setting re-ranks is in the page cache and mapped before anything is timed.
    index.tune({"ivf_nprobe": max(s[0] for s in SETTINGS),
                "pq_rerank_factor": max(s[1] for s in SETTINGS)})
    for reads in ("pread", "mmap"):
        rowfile.reads = reads
        for q in xq:
            index.search(q[None, :], K)
    for nprobe, rerank in SETTINGS:
        index.tune({"ivf_nprobe": nprobe, "pq_rerank_factor": rerank})
        for reads in ("pread", "mmap"):
            rowfile.reads = reads
            p50, p99, found = timed(lambda q: index.search(q, K)[1][0], xq)
            out["rows"].append({"nprobe": nprobe, "rerank": rerank, "reads": reads,
                                "recall": recall(found, I), "p50": p50, "p99": p99})
            print(out["rows"][-1], flush=True)
    return out


def report(args: argparse.Namespace, result: dict[str, Any]) -> str:
    rows = [[r["nprobe"], r["rerank"], r["reads"], f"{r['recall']:.3f}", f"{r['p50']:.2f}",
             f"{r['p99']:.2f}"] for r in result["rows"]]
    return (
        f"{args.n:,} x {args.dim} vectors of the embedding-like generator in the service's "
        f"`FaissIndex` (IVF-PQ nlist={args.nlist}, PQ {args.pq_m}x8, float16 disk store), "
        f"built in {result['build_s'] / 60:.0f} min; {args.queries} held-out queries, one at "
        "a time on one thread, k=10, recall@10 against exact search. `rerank` = candidates "
        "per result re-scored exactly from the float16 file; `reads` = how they are "
        "gathered: `pread` per run of rows, or from the read-only mapping of the file "
        "(`vector_reads: mmap`, the default). Both read the page cache: every query ran "
        "once each way, untimed, before the table.\n\n"
        + markdown_table(["nprobe", "rerank", "reads", "recall@10", "p50 (ms)", "p99 (ms)"],
                         rows))


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
    with tempfile.TemporaryDirectory(prefix="imgsearch-rerank-") as tmp:
        args.work = args.work or tmp
        result = measure(args)
    body = report(args, result)
    print(body)
    if not args.dry_run:
        write_section("index-rerank", f"Re-ranking reads at {args.n:,} vectors", body)


if __name__ == "__main__":
    main()
