"""Vector index benchmark -> docs/benchmarks.md, section "index".

For each size (768-d normalised Gaussian mixture): build time, bytes per vector, recall@10
against exact search and single-query p50/p99 latency on one thread, for exact search
(faiss default, faiss with a lowered BLAS threshold, NumPy matmul + argpartition), HNSW,
IVF-SQ8 and IVF-PQ through the service's own FaissIndex; then a projection for 10M vectors
on a 24 GB machine from the measured bytes per vector and the latency growth between sizes;
then what a snapshot costs the writes: single-vector upserts run in a loop while a snapshot
of the whole index is written (to --snapshot-dir), side by side with the same loop without
a snapshot (the longest write against the snapshot's duration, which is how long every
write waited when snapshots held the write lock).

    python bench/index.py                          # 100k and 1M (1M needs about 8 GB)
    python bench/index.py --sizes 20000 --dry-run  # a quick check, nothing written
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # single-query latency on one thread
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import markdown_table, write_section
from services.common.cpu import available_cpus
from services.index.store.durable import DurableIndex
from services.index.store.exact import search_numpy
from services.index.store.faiss_backend import FaissIndex
from services.index.store.genmeta import GenerationMeta
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


def _write_loop(index: DurableIndex, d: int, stop: threading.Event, first_id: int
                ) -> list[tuple[float, float]]:
    """Single-vector upserts of new ids until `stop`: (start, latency in ms) of each."""
    rng = np.random.default_rng(first_id)
    times: list[tuple[float, float]] = []
    while not stop.is_set():
        x = rng.standard_normal((1, d)).astype(np.float32)
        x /= np.linalg.norm(x)
        t = time.perf_counter()
        index.upsert(np.array([first_id + len(times)], np.int64), x, "bench")
        times.append((t, (time.perf_counter() - t) * 1e3))
    return times


def snapshot_stall(backend: FaissIndex, n: int, d: int, root: Path) -> dict[str, object]:
    """Write latency with and without a snapshot running, over the filled `backend`."""
    directory = Path(tempfile.mkdtemp(prefix="bench-index-", dir=root))
    index = DurableIndex(directory, backend, snapshot_every=10**9,
                         meta=GenerationMeta(type=backend.index_type,
                                             config_type=backend.index_type))
    try:
        stop = threading.Event()
        out: dict[str, list[tuple[float, float]]] = {}

        def loop(name: str, first: int) -> threading.Thread:
            thread = threading.Thread(
                target=lambda: out.__setitem__(name, _write_loop(index, d, stop, first)))
            thread.start()
            return thread

        t = time.perf_counter()
        index.snapshot()  # the first one: everything (as the later ones will be)
        snap_s = time.perf_counter() - t
        stop.clear()
        quiet = loop("quiet", 10 * n)
        time.sleep(min(snap_s, 10.0))
        stop.set()
        quiet.join()
        stop.clear()
        busy = loop("busy", 20 * n)
        time.sleep(0.2)
        t0 = time.perf_counter()
        index.snapshot()
        t1 = time.perf_counter()
        stop.set()
        busy.join()
        q = np.asarray([ms for _, ms in out["quiet"]])
        # Writes issued while the snapshot ran (the one in flight when it began included).
        b = np.asarray([ms for start, ms in out["busy"] if t0 <= start + ms / 1e3 and start < t1])
        return {"size": n, "index": backend.index_type, "snapshot_s": t1 - t0,
                "writes": len(b), "quiet_p50": float(np.percentile(q, 50)),
                "quiet_max": float(q.max()), "busy_p50": float(np.percentile(b, 50)),
                "busy_p99": float(np.percentile(b, 99)), "busy_max": float(b.max())}
    finally:
        index.close(snapshot=False)
        shutil.rmtree(directory, ignore_errors=True)


def run_size(n: int, d: int, nq: int, types: list[str], snapshot_types: list[str],
             snapshot_dir: Path, stalls: list[dict[str, object]],
             skipped: list[int], hnsw_max_size: int) -> list[dict[str, object]]:
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
    if "flat" in snapshot_types:
        exact = FaissIndex("flat", FaissParams())
        exact.upsert(ids, xb, "bench")
        stalls.append(snapshot_stall(exact, n, d, snapshot_dir))
        print(stalls[-1], flush=True)  # the bench is a script: progress on stdout

    for index_type in types:
        if index_type == "hnsw" and n > hnsw_max_size:
            skipped.append(n)
            continue
        params = FaissParams(train_min=0, pq_m=64, ivf_nprobe=32, hnsw_ef_search=256,
                             filter_exact_max=0)
        index = FaissIndex(index_type, params)
        # Builds use every core, as the service's do; queries are timed on one thread.
        faiss.omp_set_num_threads(available_cpus())
        t = time.perf_counter()
        index.upsert(ids, xb, "bench")
        build = time.perf_counter() - t
        faiss.omp_set_num_threads(1)
        stats = index.stats()
        ann_bytes = 0
        if index._ann is not None:
            ann_bytes = len(faiss.serialize_index(index._ann.index))
        p50, p99, found = latencies(lambda q: index.search(q, 10)[1], xq)  # noqa: B023
        rows.append({"size": n, "index": index_type, "build_s": build,
                     "bytes": (ann_bytes + 4 * d * n + 16 * n) / n,
                     "ram_bytes": stats.bytes / n, "recall": recall(found, truth),
                     "p50": p50, "p99": p99})
        if index_type in snapshot_types:
            stalls.append(snapshot_stall(index, n, d, snapshot_dir))  # closes the index
            print(stalls[-1], flush=True)
        else:
            index.close()
    return rows


def projection(rows: list[dict[str, object]], d: int) -> str:
    sizes = sorted({int(r["size"]) for r in rows})  # type: ignore[call-overload]
    lines: list[list[object]] = []
    for name in sorted({str(r["index"]) for r in rows}):
        by = {int(r["size"]): r for r in rows if r["index"] == name}  # type: ignore[call-overload]
        present = [size for size in sizes if size in by]
        small, big = by[present[0]], by[present[-1]]
        per_vec = float(big.get("ram_bytes", big["bytes"]))  # type: ignore[arg-type]
        gb = per_vec * 10_000_000 / 2**30
        growth = "n/a"
        p50_10m = float("nan")
        if len(present) > 1:
            ratio = float(big["p50"]) / max(float(small["p50"]), 1e-9)  # type: ignore[arg-type]
            exponent = np.log(ratio) / np.log(present[-1] / present[0])
            p50_10m = float(big["p50"]) * (10_000_000 / present[-1]) ** exponent  # type: ignore[arg-type]
            growth = f"x{ratio:.1f} per x{present[-1] // present[0]} vectors"
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
    parser.add_argument("--snapshot-types", default="flat,hnsw",
                        help="types whose snapshot cost is measured ('' for none)")
    parser.add_argument("--snapshot-dir", default=tempfile.gettempdir(),
                        help="where the snapshots are written (1M hnsw: about 7 GB)")
    parser.add_argument("--dry-run", action="store_true", help="print, do not write the doc")
    parser.add_argument("--hnsw-max-size", type=int, default=200_000,
                        help="build HNSW only up to this size (its build is single-core-bound "
                             "here: about 5 minutes at 100k on 2 cores, 10x that at 1M)")
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    rows: list[dict[str, object]] = []
    stalls: list[dict[str, object]] = []
    skipped: list[int] = []
    snapshot_types = [t for t in args.snapshot_types.split(",") if t]
    for n in (int(s) for s in args.sizes.split(",")):
        print(f"== {n} x {args.dim}", flush=True)
        for row in run_size(n, args.dim, args.queries, args.types.split(","), snapshot_types,
                            Path(args.snapshot_dir), stalls, skipped, args.hnsw_max_size):
            print(row, flush=True)
            rows.append(row)
    table = markdown_table(
        ["vectors", "index", "build (s)", "bytes/vector (disk)", "recall@10", "p50 (ms)",
         "p99 (ms)"],
        [[r["size"], r["index"], f"{float(r['build_s']):.1f}",  # type: ignore[arg-type]
          f"{float(r['bytes']):.0f}", f"{float(r['recall']):.3f}",  # type: ignore[arg-type]
          f"{float(r['p50']):.2f}", f"{float(r['p99']):.2f}"] for r in rows])  # type: ignore[arg-type]
    body = (f"{args.dim}-d normalised Gaussian mixture (1000 centres), {args.queries} single "
            "queries on one thread (builds on every core), k=10; recall against exact "
            "search. Approximate types run through the service's FaissIndex (re-ranking 4k "
            "candidates exactly from the stored vectors): HNSW M=32 efC=200 efSearch=256, "
            "IVF nlist=4 sqrt(n) nprobe=32 (k-means on 64 vectors per list), "
            "PQ 64x8 bits." + (f" HNSW was not built at {', '.join(map(str, skipped))} vectors "
                               f"(--hnsw-max-size {args.hnsw_max_size}): its build alone "
                               "would take most of an hour on this machine, so its 10M row "
                               "has no latency projection."
                               if skipped else "") + "\n\n" + table
            + "\n\nProjection to 10M vectors with every vector in RAM as float32 beside the "
            "search structure (`vector_store: memory`; by default the IVF types keep them in "
            "a float16 file instead, measured at 10M in \"Vector index at 10,000,000 "
            "vectors\"):\n\n" + projection(rows, args.dim))
    if stalls:
        body += ("\n\nWhat a snapshot costs writes: one thread upserts single vectors (each "
                 "fsynced) in a loop, first alone, then while a snapshot of the whole index is "
                 "written. Before snapshots streamed outside the write lock, every write "
                 "waited for the whole snapshot.\n\n" + markdown_table(
                     ["vectors", "index", "snapshot (s)", "writes during it",
                      "write p50 alone (ms)", "longest alone (ms)", "write p50 during (ms)",
                      "write p99 during (ms)", "longest during (ms)"],
                     [[r["size"], r["index"], f"{float(r['snapshot_s']):.2f}",  # type: ignore[arg-type]
                       r["writes"], f"{float(r['quiet_p50']):.2f}",  # type: ignore[arg-type]
                       f"{float(r['quiet_max']):.1f}",  # type: ignore[arg-type]
                       f"{float(r['busy_p50']):.2f}",  # type: ignore[arg-type]
                       f"{float(r['busy_p99']):.2f}",  # type: ignore[arg-type]
                       f"{float(r['busy_max']):.1f}"] for r in stalls]))  # type: ignore[arg-type]
    print(body)
    if not args.dry_run:
        write_section("index", "Vector index", body)


if __name__ == "__main__":
    main()
