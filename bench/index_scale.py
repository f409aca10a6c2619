"""The vector index at millions of vectors -> docs/benchmarks.md, section "index-scale-<n>".

n x 768 vectors from the embedding-like generator (tests/index/data.py `EmbeddingLike`:
a decaying PCA spectrum, Zipf-sized overlapping clusters, held-out perturbed queries),
generated in chunks of 100k and never all in memory. Two sides, each in its own process so
that each RSS is its own:

- ours: the service's `FaissIndex`, IVF-PQ with the vectors in the float16 disk store, filled
  by 100k-vector upserts (the upsert crossing `train_min` trains on a sample of 64 vectors per
  list, later ones add in blocks). A checkpoint (a snapshot of the index plus the exact
  top-10 gathered so far) every `--checkpoint` chunks: an interrupted run resumes from it.
  The build uses every core (`--build-threads`); searches run on one thread. Then recall@10
  against exact search and single-query latency, for a grid of nprobe x rerank_factor; and
  a tag holding 10% of the images (every 10th), searched as the gateway sends it (the tag's
  name, the index's own tag sets) and as a list of its ids (`allowed_ids`), with recall
  against exact search over the tagged vectors.
- faiss: Faiss used directly: the same IVF-PQ file searched with no re-ranking, and (up to
  `--refine-max` vectors) IndexIVFPQ + IndexRefine over float16 vectors held in RAM, the
  usual way to re-rank with Faiss alone.

    python bench/index_scale.py --n 1000000 --work /var/tmp/index-1m
    nohup python bench/index_scale.py --n 10000000 --work /var/tmp/index-10m \\
        > /var/tmp/index-10m.log 2>&1 &      # resumable: run the same command again
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._knn import K, merge_truth, recall, timed
from bench._report import markdown_table, write_section
from services.index.store import snapshot as snap
from services.index.store.faiss_backend import FaissIndex
from services.index.store.params import FaissParams
from tests.index.data import EmbeddingLike

MODEL = "bench:embedding-like"
TAG = "ten"  # carried by every 10th image
TAG_EVERY = 10


def generator(args: argparse.Namespace) -> EmbeddingLike:
    return EmbeddingLike(args.dim, clusters=max(100, args.n // 1000), seed=0)


def memory() -> dict[str, float]:
    """This process's resident memory now (GB): total, anonymous, file pages; and the peak."""
    out: dict[str, float] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 2**20
    out["peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


def _checkpoint(index: FaissIndex, ck: Path, chunks: int, truth: dict[str, np.ndarray]) -> None:
    np.savez(ck / f"truth-{chunks}.npz", **truth)
    view = index.freeze()
    try:
        snap.write_snapshot(ck, chunks, view)
    finally:
        index.thaw(view)
    snap.prune(ck, chunks)
    for old in ck.glob("truth-*.npz"):
        if old.name != f"truth-{chunks}.npz":
            old.unlink()


def phase_ours(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work)
    ck = work / "ours-checkpoint"
    ck.mkdir(parents=True, exist_ok=True)
    gen = generator(args)
    xq = gen.queries(args.queries)
    params = FaissParams(ivf_nlist=args.nlist, pq_m=args.pq_m, pq_nbits=8,
                         train_min=64 * args.nlist, train_points_per_list=64)
    index = FaissIndex("ivf_pq", params, store_dir=work / "ours-store")
    empty = (np.full((len(xq), K), -np.inf, dtype=np.float32), np.full((len(xq), K), -1, np.int64))
    truth = {"D": empty[0], "I": empty[1], "TD": empty[0], "TI": empty[1]}
    done = 0
    loaded = snap.load_latest(ck)
    if loaded is not None:
        done, state = loaded
        print(f"resuming after chunk {done}", flush=True)
        index.import_state(state)
        truth = dict(np.load(ck / f"truth-{done}.npz"))
    # Build seconds and peak RSS (GB) before this run (a checkpoint records them).
    before = float(truth.pop("elapsed", np.float64(0.0)))
    peak_before = float(truth.pop("peak", np.float64(0.0)))
    total = gen.chunks(args.n)
    started = time.monotonic()
    faiss.omp_set_num_threads(args.build_threads)
    with threadpool_limits(limits=args.build_threads, user_api="blas"):
        for c in tqdm(range(done, total), initial=done, total=total, desc="ours: add",
                      unit="chunk", mininterval=30):
            x = gen.base_chunk(c, args.n)
            first = c * gen.chunk
            ids = np.arange(first, first + len(x), dtype=np.int64)
            index.upsert(ids, x, MODEL)
            tagged = ids % TAG_EVERY == 0
            index.set_tags(ids[tagged], [[TAG]] * int(tagged.sum()))
            truth["D"], truth["I"] = merge_truth(truth["D"], truth["I"], xq, x, first)
            truth["TD"], truth["TI"] = merge_truth(truth["TD"], truth["TI"], xq, x[tagged],
                                                   ids=ids[tagged])
            if (c + 1) % args.checkpoint == 0 or c + 1 == total:
                # The last one too: measuring again (another grid) needs no second build.
                _checkpoint(index, ck, c + 1, {
                    **truth, "elapsed": np.float64(before + time.monotonic() - started),
                    "peak": np.float64(max(peak_before, memory()["peak"]))})
    faiss.omp_set_num_threads(1)
    build_s = before + time.monotonic() - started
    I = truth["I"]
    np.save(work / "truth.npy", I)
    out: dict[str, Any] = {"n": args.n, "build_s": build_s, "resumed_at": done * gen.chunk,
                           "build_threads": args.build_threads,
                           "stats": {"ram_bytes": index.stats().bytes,
                                     "disk_bytes": index.stats().disk_bytes}}
    out["memory_after_build"] = memory()
    # The build's peak: this run's, unless it built nothing (resumed at the end: loading
    # the checkpoint is not the build).
    out["build_peak"] = max(peak_before, out["memory_after_build"]["peak"]) \
        if done < total else peak_before
    out["load"] = [os.getloadavg()[0]]
    with threadpool_limits(limits=1, user_api="blas"):
        # One untimed pass of every query at the widest setting: the rows re-ranking reads
        # are in the page cache for every row of the grid alike, not only for the later ones.
        index.tune({"ivf_nprobe": max(args.nprobes), "pq_rerank_factor": max(args.reranks)})
        for q in tqdm(xq, desc="ours: warm-up", unit="query", mininterval=30):
            index.search(q[None, :], K)
        # The grid once per budget of mapped pages (vector_map_mb; 0: unbounded), each
        # starting with nothing mapped.
        out["grids"] = []
        for mb in args.map_mb:
            index.set_store_map_budget(mb << 20 if mb else 1 << 62)
            curve = []
            for nprobe in args.nprobes:
                for rf in args.reranks:
                    index.tune({"ivf_nprobe": nprobe, "pq_rerank_factor": rf})
                    p50, p99, found = timed(lambda q: index.search(q, K)[1][0], xq)
                    curve.append({"nprobe": nprobe, "rerank": rf, "recall": recall(found, I),
                                  "p50": p50, "p99": p99})
                    print("ours", mb, curve[-1], flush=True)
            # The service's defaults: nprobe and candidates chosen from the gallery.
            index.tune({"ivf_nprobe": 0, "pq_rerank_factor": 0})
            auto = index.stats().params["in_effect"]
            p50, p99, found = timed(lambda q: index.search(q, K)[1][0], xq)
            curve.append({"nprobe": auto["nprobe"], "rerank": auto["rerank_factor"],
                          "recall": recall(found, I), "p50": p50, "p99": p99,
                          "defaults": True})
            print("ours", mb, curve[-1], flush=True)
            out["grids"].append({"map_mb": mb, "curve": curve, "memory": memory()})
        # A tag on 10% of the images: by name (the gateway's way), and as a list of its ids
        # (on fewer queries: each resolves a million ids), with the first budget and the
        # service's defaults.
        index.set_store_map_budget(args.map_mb[0] << 20 if args.map_mb[0] else 1 << 62)
        best = out["grids"][0]["curve"][-1]
        index.tune({"ivf_nprobe": 0, "pq_rerank_factor": 0})
        tag = np.arange(0, args.n, TAG_EVERY, dtype=np.int64)
        for q in tqdm(xq, desc="ours: warm-up, tag", unit="query", mininterval=30):
            index.search(q[None, :], K, tags=[TAG])  # the tagged rows it re-ranks: cached
        few = min(len(xq), args.allowed_queries)
        p50u, p99u, _ = timed(lambda q: index.search(q, K)[1][0], xq)
        p50n, p99n, found_n = timed(lambda q: index.search(q, K, tags=[TAG])[1][0], xq)
        p50f, p99f, found_f = timed(lambda q: index.search(q, K, allowed_ids=tag)[1][0],
                                    xq[:few])
    out["filter"] = {"nprobe": best["nprobe"], "rerank": best["rerank"], "tag_ids": len(tag),
                     "unfiltered_p50": p50u, "unfiltered_p99": p99u,
                     "named_p50": p50n, "named_p99": p99n,
                     "named_recall": recall(found_n, truth["TI"]),
                     "filtered_p50": p50f, "filtered_p99": p99f, "filtered_queries": few,
                     "filtered_recall": recall(found_f, truth["TI"][:few]),
                     "tag_bytes": index.tags.nbytes}
    print("filter", out["filter"], flush=True)
    out["load"].append(os.getloadavg()[0])
    out["memory"] = memory()
    assert index._ann is not None
    np.save(work / "ours-labels.npy", index._ann.write(work / "ann.faiss"))
    return out


def phase_faiss(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work)
    gen = generator(args)
    xq = gen.queries(args.queries)
    truth = np.load(work / "truth.npy")
    out: dict[str, Any] = {"n": args.n}
    ivf = faiss.read_index(str(work / "ann.faiss"))
    labels = np.load(work / "ours-labels.npy") if (work / "ours-labels.npy").exists() else None
    curve = []
    for nprobe in args.nprobes:
        ivf.nprobe = nprobe
        p50, p99, found = timed(lambda q: ivf.search(q, K)[1][0], xq)
        if labels is not None:
            found = labels[found]
        curve.append({"nprobe": nprobe, "recall": recall(found, truth), "p50": p50, "p99": p99})
        print("faiss ivfpq", curve[-1], flush=True)
    out["ivfpq"] = {"curve": curve, "memory": memory()}
    (work / "faiss-partial.json").write_text(json.dumps(out, indent=1))  # if the rest is cut
    if args.n <= args.refine_max:
        ivf.reset()
        refine = faiss.IndexRefine(ivf, faiss.IndexScalarQuantizer(
            args.dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT))
        started = time.monotonic()
        faiss.omp_set_num_threads(args.build_threads)
        with threadpool_limits(limits=args.build_threads, user_api="blas"):
            for c in tqdm(range(gen.chunks(args.n)), desc="faiss: add", unit="chunk",
                          mininterval=30):
                refine.add(gen.base_chunk(c, args.n))
        faiss.omp_set_num_threads(1)
        build_s = time.monotonic() - started
        rcurve = []
        for nprobe in args.nprobes:
            for rf in args.reranks:
                sp = faiss.IndexRefineSearchParameters(
                    k_factor=rf, base_index_params=faiss.SearchParametersIVF(nprobe=nprobe))
                p50, p99, found = timed(lambda q: refine.search(q, K, params=sp)[1][0], xq)  # noqa: B023
                rcurve.append({"nprobe": nprobe, "rerank": rf, "recall": recall(found, truth),
                               "p50": p50, "p99": p99})
                print("faiss refine", rcurve[-1], flush=True)
        out["refine"] = {"curve": rcurve, "build_s": build_s, "memory": memory()}
    return out


def report(args: argparse.Namespace, ours: dict[str, Any], direct: dict[str, Any]) -> str:
    n = args.n
    rows: list[list[object]] = []
    for grid in ours["grids"]:
        mem_o, mb = grid["memory"], grid["map_mb"]
        side = "ours: IVF-PQ + float16 disk store, " + (
            f"mapped pages <= {mb} MB" if mb else "mapped pages unbounded")
        for c in grid["curve"]:
            rows.append([side + (" (service defaults)" if c.get("defaults") else ""),
                         c["nprobe"], c["rerank"], f"{c['recall']:.3f}",
                         f"{c['p50']:.2f}", f"{c['p99']:.2f}",
                         f"{mem_o['VmRSS']:.2f} ({mem_o['RssAnon']:.2f} anon)"])
    mem_f = direct["ivfpq"]["memory"]
    for c in direct["ivfpq"]["curve"]:
        rows.append(["Faiss IVF-PQ alone", c["nprobe"], "-", f"{c['recall']:.3f}",
                     f"{c['p50']:.2f}", f"{c['p99']:.2f}", f"{mem_f['VmRSS']:.2f}"])
    if "refine" in direct:
        mem_r = direct["refine"]["memory"]
        for c in direct["refine"]["curve"]:
            rows.append(["Faiss IVF-PQ + IndexRefine fp16 (RAM)", c["nprobe"], c["rerank"],
                         f"{c['recall']:.3f}", f"{c['p50']:.2f}", f"{c['p99']:.2f}",
                         f"{mem_r['VmRSS']:.2f}"])
    f = ours["filter"]
    tag_rows: list[list[object]] = [
        ["unfiltered", "-", f"{f['unfiltered_p50']:.2f}", f"{f['unfiltered_p99']:.2f}", "x1.00"],
        ["tag named (the index's tag sets)", f"{f['named_recall']:.3f}",
         f"{f['named_p50']:.2f}", f"{f['named_p99']:.2f}",
         f"x{f['named_p50'] / f['unfiltered_p50']:.2f}"],
        [f"its {f['tag_ids']:,} ids as allowed_ids ({f['filtered_queries']} queries)",
         f"{f['filtered_recall']:.3f}",
         f"{f['filtered_p50']:.2f}", f"{f['filtered_p99']:.2f}",
         f"x{f['filtered_p50'] / f['unfiltered_p50']:.2f}"],
    ]
    load = ours.get("load", [float("nan")] * 2)
    text = (
        f"{n:,} x {args.dim} vectors of the embedding-like generator (decaying PCA spectrum, "
        f"{max(100, n // 1000)} Zipf-sized overlapping clusters), {args.queries} held-out "
        f"perturbed queries, one at a time on one thread, k={K}, recall@10 against exact "
        f"search. IVF nlist={args.nlist} (trained on {64 * args.nlist:,} vectors"
        + ("; the service's automatic value at this size" if args.auto_nlist else "")
        + f"), PQ "
        f"{args.pq_m}x8 bits; `rerank` = candidates per result re-scored exactly (ours: "
        f"from the float16 file through its read-only mapping; Faiss: from float16 codes in "
        f"RAM); `service defaults` = nprobe and candidates as the service chooses them for "
        f"this gallery with `ivf_nprobe: 0`, `pq_rerank_factor: 0` (docs/index.md). Every "
        f"query ran once, untimed, at the widest setting (and once with the tag) "
        f"before the tables: the rows re-ranking reads are in the page cache for every row "
        f"alike (a cold cache adds a disk read per candidate row). RSS in GB after the "
        f"grid (ours: anonymous memory beside it; the rest are pages of the vector file "
        f"mapped by re-ranking: the service drops them from the process past "
        f"`vector_map_mb`, 2048 MB by default; each grid starts with none mapped). Ours "
        f"built in "
        f"{ours['build_s'] / 60:.0f} min on {ours.get('build_threads', 1)} thread(s) "
        f"(generation and the exact top-10 included; peak RSS "
        f"{ours['build_peak']:.2f} GB), {ours['stats']['ram_bytes'] / n:.0f} bytes of "
        f"RAM and {ours['stats']['disk_bytes'] / n:.0f} bytes of disk per vector"
        + ("; the searches ran in a later process that loaded the index from the build's "
           "final checkpoint (build time and peak as the build recorded them)"
           if ours.get("resumed_at", 0) >= n else "")
        + f". Load "
        f"average (1 min) {load[0]:.1f} before the searches, {load[1]:.1f} after, on "
        f"{os.cpu_count()} cores.\n\n"
        + markdown_table(["side", "nprobe", "rerank", "recall@10", "p50 (ms)", "p99 (ms)",
                          "RSS (GB)"], rows)
        + f"\n\nA tag on every 10th image ({f['tag_ids']:,} images; the index's tag sets hold "
        f"it in {f['tag_bytes'] / 2**20:.0f} MB), nprobe={f['nprobe']}, rerank={f['rerank']} "
        f"(the service's defaults); recall@10 against exact search over "
        f"the tagged vectors; `vs unfiltered` = p50 over the unfiltered p50. `allowed_ids` is "
        f"handed over in-process (the catalog listing the ids and the request body not "
        f"counted).\n\n"
        + markdown_table(["query", "recall@10", "p50 (ms)", "p99 (ms)", "vs unfiltered"],
                         tag_rows))
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--nlist", type=int, default=0,
                        help="inverted lists (0: the service's automatic value at --n)")
    parser.add_argument("--pq-m", type=int, default=64)
    parser.add_argument("--nprobes", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--reranks", type=int, nargs="+", default=[4, 16, 64],
                        help="candidates per result re-scored exactly")
    parser.add_argument("--map-mb", type=int, nargs="+", default=[2048, 0],
                        help="vector_map_mb of each grid, side by side (0: unbounded)")
    parser.add_argument("--allowed-queries", type=int, default=200,
                        help="queries of the allowed_ids row (each resolves the tag's ids)")
    parser.add_argument("--build-threads", type=int, default=os.cpu_count() or 1,
                        help="threads of the build (searches run on one)")
    parser.add_argument("--checkpoint", type=int, default=20, help="chunks between checkpoints")
    parser.add_argument("--refine-max", type=int, default=2_000_000,
                        help="build Faiss IVF-PQ + IndexRefine (float16 in RAM) up to this n")
    parser.add_argument("--work", help="working directory (about 3.5 GB per million vectors "
                        "at the peak of a checkpoint; default: a directory under the temp "
                        "directory named for n, kept so that a second run resumes)")
    parser.add_argument("--phase", choices=["ours", "faiss"], help=argparse.SUPPRESS)
    parser.add_argument("--dry-run", action="store_true", help="print, do not write the doc")
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    args.auto_nlist = not args.nlist
    if args.auto_nlist:
        args.nlist = FaissParams().nlist_for(args.n)
    if not args.work:
        args.work = str(Path(tempfile.gettempdir()) / f"imgsearch-index-scale-{args.n}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.phase:
        result = phase_ours(args) if args.phase == "ours" else phase_faiss(args)
        (work / f"{args.phase}.json").write_text(json.dumps(result, indent=1))
        return
    base = [sys.executable, __file__, *sys.argv[1:]]
    for phase in ("ours", "faiss"):
        if not (work / f"{phase}.json").exists():
            subprocess.run([*base, "--phase", phase], check=True)
    ours = json.loads((work / "ours.json").read_text())
    direct = json.loads((work / "faiss.json").read_text())
    body = report(args, ours, direct)
    print(body)
    if not args.dry_run:
        label = f"{args.n // 1_000_000}m" if args.n >= 1_000_000 else f"{args.n // 1000}k"
        write_section(f"index-scale-{label}", f"Vector index at {args.n:,} vectors", body)


if __name__ == "__main__":
    main()
