"""Vector index benchmark -> docs/benchmarks.md, section "index".

For each size (768-d normalised Gaussian mixture): build time, bytes per vector, recall@10
against exact search and single-query p50/p99 latency on one thread, for exact search
(faiss default, faiss with a lowered BLAS threshold, NumPy matmul + argpartition), HNSW,
IVF-SQ8 and IVF-PQ through the service's own FaissIndex; then a projection for 10M vectors
on a 24 GB machine from the measured bytes per vector and the latency growth between sizes.

    python bench/index.py                          # 100k and 1M (1M needs about 8 GB)
    python bench/index.py --sizes 20000 --dry-run  # a quick check, nothing written
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # single-query latency on one thread
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import markdown_table, write_section
from services.index.store.exact import search_numpy
from services.index.store.faiss_backend import FaissIndex
from services.index.store.params import FaissParams

MEMORY_GB = 24


def mixture(n: int, d: int, seed: int = 0, clusters: int = 1000) -> np.ndarray:
    """(n, d) unit vectors around `clusters` centres, generated in blocks."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        block = centres[rng.integers(0, clusters, m)] + 0.6 * rng.standard_normal(
            (m, d)).astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + m] = block
    return out


def latencies(search: Callable[[np.ndarray], np.ndarray], xq: np.ndarray) -> tuple[
        float, float, np.ndarray]:
    """Single-query p50, p99 (ms) and the (nq, 10) results."""
    search(xq[:1])  # warm-up
    times, results = [], []
    for q in xq:
        t = time.perf_counter()
        results.append(search(q[None, :])[0])
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99)), np.asarray(results)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth,
                                                                         strict=True)]))


def run_size(n: int, d: int, nq: int, types: list[str]) -> list[dict[str, object]]:
    xb = mixture(n, d)
    rng = np.random.default_rng(1)
    xq = xb[rng.integers(0, n, nq)] + 0.05 * rng.standard_normal((nq, d)).astype(np.float32)
    xq /= np.linalg.norm(xq, axis=1, keepdims=True)
    ids = np.arange(n, dtype=np.int64)
    _, truth = search_numpy(xq, xb, 10)
    rows: list[dict[str, object]] = []

    flat = faiss.IndexFlatIP(d)
    flat.add(xb)
    default_threshold = faiss.cvar.distance_compute_blas_threshold
    for name, threshold in (("exact (faiss default)", default_threshold),
                            ("exact (faiss, blas threshold 1)", 1)):
        faiss.cvar.distance_compute_blas_threshold = threshold
        p50, p99, found = latencies(lambda q: flat.search(q, 10)[1], xq)
        rows.append({"size": n, "index": name, "build_s": 0.0, "bytes": 4 * d,
                     "recall": recall(found, truth), "p50": p50, "p99": p99})
    faiss.cvar.distance_compute_blas_threshold = default_threshold
    flat.reset()  # free its memory before the approximate indexes are built
    p50, p99, found = latencies(lambda q: search_numpy(q, xb, 10)[1], xq)
    rows.append({"size": n, "index": "exact (numpy, service default)", "build_s": 0.0,
                 "bytes": 4 * d, "recall": recall(found, truth), "p50": p50, "p99": p99})

    for index_type in types:
        params = FaissParams(train_min=0, pq_m=64, ivf_nprobe=32, hnsw_ef_search=256,
                             filter_exact_max=0)
        index = FaissIndex(index_type, params)
        t = time.perf_counter()
        index.upsert(ids, xb, "bench")
        build = time.perf_counter() - t
        stats = index.stats()
        ann_bytes = 0
        if index._ann is not None:
            ann_bytes = len(faiss.serialize_index(index._ann.index))
        p50, p99, found = latencies(lambda q, ix=index: ix.search(q, 10)[1], xq)
        rows.append({"size": n, "index": index_type, "build_s": build,
                     "bytes": (ann_bytes + 4 * d * n + 16 * n) / n,
                     "ram_bytes": stats.bytes / n, "recall": recall(found, truth),
                     "p50": p50, "p99": p99})
        index.close()
    return rows


def projection(rows: list[dict[str, object]], d: int) -> str:
    sizes = sorted({int(r["size"]) for r in rows})  # type: ignore[call-overload]
    lines = []
    for name in sorted({str(r["index"]) for r in rows}):
        by = {int(r["size"]): r for r in rows if r["index"] == name}  # type: ignore[call-overload]
        small, big = by[sizes[0]], by[sizes[-1]]
        per_vec = float(big.get("ram_bytes", big["bytes"]))  # type: ignore[arg-type]
        gb = per_vec * 10_000_000 / 2**30
        growth = "n/a"
        p50_10m = float("nan")
        if len(sizes) > 1:
            ratio = float(big["p50"]) / max(float(small["p50"]), 1e-9)  # type: ignore[arg-type]
            exponent = np.log(ratio) / np.log(sizes[-1] / sizes[0])
            p50_10m = float(big["p50"]) * (10_000_000 / sizes[-1]) ** exponent  # type: ignore[arg-type]
            growth = f"x{ratio:.1f} per x{sizes[-1] // sizes[0]} vectors"
        fits = "yes" if gb < 0.8 * MEMORY_GB else "no (needs compressed or memory-mapped vectors)"
        lines.append([name, f"{per_vec:.0f}", f"{gb:.1f}", fits, growth, f"{p50_10m:.1f}"])
    return markdown_table(["index", "RAM bytes/vector", "10M RAM (GB)", f"fits {MEMORY_GB} GB",
                           "p50 growth", "projected 10M p50 (ms)"], lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--types", default="hnsw,ivf_sq8,ivf_pq")
    parser.add_argument("--dry-run", action="store_true", help="print, do not write the doc")
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    rows: list[dict[str, object]] = []
    for n in (int(s) for s in args.sizes.split(",")):
        print(f"== {n} x {args.dim}", flush=True)
        for row in run_size(n, args.dim, args.queries, args.types.split(",")):
            print(row, flush=True)
            rows.append(row)
    table = markdown_table(
        ["vectors", "index", "build (s)", "bytes/vector (disk)", "recall@10", "p50 (ms)",
         "p99 (ms)"],
        [[r["size"], r["index"], f"{float(r['build_s']):.1f}",  # type: ignore[arg-type]
          f"{float(r['bytes']):.0f}", f"{float(r['recall']):.3f}",  # type: ignore[arg-type]
          f"{float(r['p50']):.2f}", f"{float(r['p99']):.2f}"] for r in rows])  # type: ignore[arg-type]
    body = (f"{args.dim}-d normalised Gaussian mixture (1000 centres), {args.queries} single "
            "queries on one thread, k=10; recall against exact search. Approximate types run "
            "through the service's FaissIndex (re-ranking 4k candidates exactly from the "
            "stored vectors): HNSW M=32 efC=200 efSearch=256, IVF nlist=4 sqrt(n) nprobe=32, "
            "PQ 64x8 bits.\n\n" + table + "\n\nProjection to 10M vectors (RAM holds the full "
            "float32 vectors beside the search structure):\n\n" + projection(rows, args.dim))
    print(body)
    if not args.dry_run:
        write_section("index", "Vector index", body)


if __name__ == "__main__":
    main()
