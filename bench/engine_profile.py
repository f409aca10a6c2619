"""Where the NumPy engine's time goes: one thread, the steps of every block timed apart.

The loop below runs `Dinov2Model.block_step`, the block step of both of the engine's thread
splits, over whole images on one thread, with a clock read after each step (its `tick`); its
output is checked against `Dinov2Model.forward` before anything is reported. Four images is
one thread's share of a batch of 8 on two threads. When an OPENBLAS_CORETYPE is in effect,
the profile also runs in a child process with the kernels OpenBLAS detects. Then batch 1 as
the engine runs it on two threads, the rows split, each thread timing its own steps by CPU
and wall time beside one thread on all the rows, the block's products on a row split's
and a column split's share, and the same products by one level of Strassen-Winograd.
Writes section "engine-profile" of docs/benchmarks.md.

    .venv/bin/python bench/engine_profile.py              # ViT-S and ViT-B (about 2 minutes)
    .venv/bin/python bench/engine_profile.py --print-only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.cpu import ENV as CORETYPE_ENV
from services.common.cpu import choose_openblas_kernels

CORETYPE = choose_openblas_kernels()  # as `imgsearch` does: before NumPy loads OpenBLAS

import numpy as np  # noqa: E402

from bench._report import markdown_table, write_section  # noqa: E402
from services.embedding.engine import Dinov2Model  # noqa: E402
from services.embedding.engine.blas import blas_threads  # noqa: E402
from services.embedding.engine.model import F32, _aligned_empty  # noqa: E402

STEPS = ("QKV product", "fc1 product", "fc2 product", "projection product", "attention",
         "GELU", "layer norms", "bias and residual adds")
WAIT = "barrier wait"


def profile(arch: str, images: int, rounds: int) -> tuple[dict[str, float], float]:
    """ms per image of each step (median over rounds) and of the whole blocks."""
    model = Dinov2Model.random(arch, seed=0, threads=1)
    cfg = model.config
    if cfg.mlp != "gelu":
        raise SystemExit(f"{arch}: only the GELU MLP is profiled")
    pixels = np.random.default_rng(1).standard_normal((images, 3, 224, 224)).astype(np.float32)
    samples: dict[str, list[float]] = defaultdict(list)
    spent: dict[str, float] = defaultdict(float)
    clock = 0.0

    def tick(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        spent[step] += now - clock
        clock = now

    with blas_threads(1):
        for round_ in range(rounds + 1):
            x = model._tokens(pixels)
            b, t, d = x.shape
            rows = b * t
            xs = x.reshape(rows, d)
            qkv = model._scratch[0].get("qkv", rows, 3 * d)
            spent.clear()
            clock = time.perf_counter()
            for blk in model._blocks:
                model.block_step(0, blk, xs, qkv, 0, rows, t, tick=tick)
            model._final_norm(model._scratch[0], xs)
            if round_ == 0:  # warm-up, and the check that this loop is the engine's
                expected = model.forward(pixels)
                if not np.allclose(x, expected, atol=1e-5, rtol=0):
                    raise SystemExit("the profiled loop no longer matches Dinov2Model.forward")
                continue
            for step, seconds in spent.items():
                samples[step].append(seconds * 1000 / images)
    model.close()
    medians = {step: float(np.median(samples[step])) for step in STEPS}
    return medians, sum(medians.values())


Clock = dict[str, float]


def _clocked(wall: Clock, cpu: Clock) -> Callable[[str], None]:
    """A `tick` adding the wall and CPU time since its last call (or its creation) to `step`
    of `wall` and `cpu`; its thread's CPU time, so it is made on the thread it times."""
    last = [time.perf_counter(), time.thread_time()]

    def tick(step: str) -> None:
        now = [time.perf_counter(), time.thread_time()]
        wall[step] += now[0] - last[0]
        cpu[step] += now[1] - last[1]
        last[:] = now
    return tick


def _split_forward(model: Dinov2Model, x: F32) -> tuple[list[Clock], list[Clock]]:
    """The blocks on one image x (1, T, D) in place, on two threads splitting the rows as
    `Dinov2Model._rows` does, each timing its steps: ([wall by step], [CPU by step]), one
    of each per thread, in seconds."""
    _, t, d = x.shape
    xs = x.reshape(t, d)
    ranges = [(0, t // 2), (t // 2, t)]
    buffers = [_aligned_empty(t, 3 * d) for _ in range(2)]
    barrier = threading.Barrier(2)
    walls: list[Clock] = [defaultdict(float) for _ in ranges]
    cpus: list[Clock] = [defaultdict(float) for _ in ranges]

    def run(w: int, _lo: int, _hi: int) -> None:
        lo, hi = ranges[w]
        tick = _clocked(walls[w], cpus[w])

        def wait() -> None:
            tick("bias and residual adds")
            barrier.wait()
            tick(WAIT)
        try:
            for i, blk in enumerate(model._blocks):
                model.block_step(w, blk, xs[lo:hi], buffers[i % 2], lo, hi, t, wait,
                                 tick=tick)
        except threading.BrokenBarrierError:
            return
        except BaseException:
            barrier.abort()  # the other thread stops instead of waiting forever
            raise
        model._final_norm(model._scratch[w], xs[lo:hi])
    model._parallel(run, 2)
    return walls, cpus


def profile_split(arch: str, rounds: int) -> dict[str, dict[str, float]]:
    """Batch 1 on two threads, the rows split as `Dinov2Model._rows` splits them, each thread
    timing its own steps by the wall clock and by its CPU time (`time.thread_time`), beside
    one thread running the same blocks on all the rows. A thread's wall time beyond its CPU
    time in a step is time it did not run: waiting for the interpreter lock after a NumPy
    call, at the barrier, or descheduled. ms per forward: {"one": one thread's steps, "cpu" /
    "wall": the mean of the two threads' steps}, medians over rounds."""
    model = Dinov2Model.random(arch, seed=0, threads=2)
    pixels = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    expected = model.forward(pixels)
    samples: dict[str, dict[str, list[float]]] = {k: defaultdict(list)
                                                  for k in ("one", "cpu", "wall")}
    with blas_threads(1):
        for round_ in range(rounds + 1):
            x = model._tokens(pixels)  # one thread, every row
            _, t, d = x.shape
            qkv = model._scratch[0].get("qkv", t, 3 * d)
            one: Clock = defaultdict(float)
            tick = _clocked(one, defaultdict(float))
            for blk in model._blocks:
                model.block_step(0, blk, x.reshape(t, d), qkv, 0, t, t, tick=tick)
            model._final_norm(model._scratch[0], x.reshape(t, d))
            if not np.allclose(x, expected, atol=1e-5, rtol=0):
                raise SystemExit("the one-thread loop no longer matches Dinov2Model.forward")
            x = model._tokens(pixels)
            walls, cpus = _split_forward(model, x)
            if not np.allclose(x, expected, atol=1e-5, rtol=0):
                raise SystemExit("the split loop no longer matches Dinov2Model.forward")
            if round_ == 0:
                continue
            for step in (*STEPS, WAIT):
                samples["one"][step].append(one[step] * 1000)
                samples["cpu"][step].append(sum(c[step] for c in cpus) / 2 * 1000)
                samples["wall"][step].append(sum(w[step] for w in walls) / 2 * 1000)
    model.close()
    return {kind: {step: float(np.median(v)) for step, v in steps.items()}
            for kind, steps in samples.items()}


def block_products(arch: str) -> list[tuple[str, F32]]:
    """The four weight matrices of a block (random weights, as the engine folds them), named."""
    blk = Dinov2Model.random(arch, seed=0, threads=1)._blocks[0]
    return [("QKV", blk.w_qkv), ("projection", blk.w_proj), ("fc1", blk.w_in),
            ("fc2", blk.w_out)]


def product_table(archs: tuple[str, ...], names: dict[str, str], headers: tuple[str, ...],
                  cells: Mapping[str, Mapping[str, Sequence[str]]]) -> str:
    """A table of the block's products, one row each, `headers` columns per architecture;
    `cells[arch][product]` are that row's cells for the architecture."""
    rows: list[list[object]] = [[name, *(cell for a in archs for cell in cells[a][name])]
                                for name in cells[archs[0]]]
    return markdown_table(["product", *(f"{names[a]} {h}" for a in archs for h in headers)],
                          rows)


def product_halves(arch: str, calls: int = 200) -> list[tuple[str, float, float, float]]:
    """One thread, each of the block's products (`x @ W.T`) on 257 rows; the same on 128 rows
    (a thread's share when the rows are split) and on 257 rows with half the output columns
    (a share when the weights are split): (product, us on 257 rows, 128-row time / 257-row
    time, half-column time / whole time), medians of `calls` calls after a warm-up."""
    rng = np.random.default_rng(0)

    def timed(x: F32, w: F32) -> float:
        out = np.empty((x.shape[0], w.shape[0]), np.float32)
        for _ in range(10):
            np.matmul(x, w.T, out=out)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            np.matmul(x, w.T, out=out)
            times.append(time.perf_counter() - start)
        return float(np.median(times)) * 1e6

    rows = []
    with blas_threads(1):
        for name, w in block_products(arch):
            x = rng.standard_normal((257, w.shape[1]), dtype=np.float32)
            whole = timed(x, w)
            rows.append((name, whole, timed(x[:128], w) / whole,
                         timed(x, w[:w.shape[0] // 2]) / whole))
    return rows


def winograd_weights(w: F32) -> dict[str, F32]:
    """The sums of weight blocks one level of Strassen-Winograd multiplies by, for `x @ w.T`
    with w (out, in): made once (in float64, rounded once), as a loader would."""
    n, k = w.shape[0] // 2, w.shape[1] // 2
    w64 = w.astype(np.float64)
    # blocks of B = w.T, each kept (out, in) as the engine keeps its weights
    b11, b12, b21, b22 = w64[:n, :k], w64[n:, :k], w64[:n, k:], w64[n:, k:]
    t1 = b12 - b11
    t2 = b22 - t1
    sums = {"b11": b11, "b21": b21, "b22": b22, "t1": t1, "t2": t2, "t3": b22 - b12,
            "t4": t2 - b21}
    return {name: np.ascontiguousarray(m, dtype=np.float32) for name, m in sums.items()}


def winograd_product(x: F32, ws: dict[str, F32], out: F32, a: list[F32], tmp: F32) -> None:
    """out = x @ w.T by one level of Strassen-Winograd: 7 products of half the rows, half
    the inner dimension and half the columns (one product's 8), 4 adds of quarters of x
    and 7 of quarters of out; `a` is 4 scratch quarters of x, `tmp` one quarter of out."""
    m, k, n = x.shape[0] // 2, x.shape[1] // 2, out.shape[1] // 2
    a11, a12, a21, a22 = x[:m, :k], x[:m, k:], x[m:, :k], x[m:, k:]
    s1, s2, s3, s4 = a
    np.add(a21, a22, out=s1)
    np.subtract(s1, a11, out=s2)
    np.subtract(a11, a21, out=s3)
    np.subtract(a12, s2, out=s4)
    c11, c12, c21, c22 = out[:m, :n], out[:m, n:], out[m:, :n], out[m:, n:]
    np.matmul(a11, ws["b11"].T, out=c21)                            # M1
    np.matmul(a12, ws["b21"].T, out=c11)                            # M2
    c11 += c21                                                      # C11 = M1 + M2
    np.matmul(s2, ws["t2"].T, out=tmp)
    c21 += tmp                                                      # U2 = M1 + M6
    np.matmul(s3, ws["t3"].T, out=c22)                              # M7
    np.matmul(s1, ws["t1"].T, out=tmp)                              # M5
    np.add(c21, tmp, out=c12)                                       # U4 = U2 + M5
    c21 += c22                                                      # U3 = U2 + M7
    np.add(c21, tmp, out=c22)                                       # C22 = U3 + M5
    np.matmul(s4, ws["b22"].T, out=tmp)
    c12 += tmp                                                      # C12 = U4 + M3
    np.matmul(a22, ws["t4"].T, out=tmp)
    c21 -= tmp                                                      # C21 = U3 - M4


def product_winograd(arch: str, rows: int = 4 * 257,
                     calls: int = 30) -> list[tuple[str, float, float, float, float]]:
    """One thread, each of the block's products on `rows` rows (a thread's four images at
    batch 8), as one sgemm and as one level of Strassen-Winograd with the weights' sums made
    beforehand: (product, us as one sgemm, Winograd time / sgemm time, max abs error of each
    against float64), medians of `calls` calls, the two alternating."""
    rng = np.random.default_rng(0)
    result = []
    with blas_threads(1):
        for name, w in block_products(arch):
            x = rng.standard_normal((rows, w.shape[1]), dtype=np.float32)
            ws = winograd_weights(w)
            plain = np.empty((rows, w.shape[0]), np.float32)
            wino = np.empty_like(plain)
            a = [np.empty((rows // 2, w.shape[1] // 2), np.float32) for _ in range(4)]
            tmp = np.empty((rows // 2, w.shape[0] // 2), np.float32)
            times: dict[str, list[float]] = {"sgemm": [], "winograd": []}
            for i in range(calls + 3):
                start = time.perf_counter()
                np.matmul(x, w.T, out=plain)
                middle = time.perf_counter()
                winograd_product(x, ws, wino, a, tmp)
                if i >= 3:
                    times["sgemm"].append(middle - start)
                    times["winograd"].append(time.perf_counter() - middle)
            exact = x.astype(np.float64) @ w.T.astype(np.float64)
            sgemm, winograd = (float(np.median(times[k])) for k in ("sgemm", "winograd"))
            result.append((name, sgemm * 1e6, winograd / sgemm,
                           float(np.abs(plain - exact).max()),
                           float(np.abs(wino - exact).max())))
    return result


# ONNX Runtime's operators (after its graph optimisations) by what they compute
ORT_GROUPS = {"MatMul": "matrix products", "FusedMatMul": "matrix products",
              "Gemm": "matrix products", "BiasGelu": "GELU", "Gelu": "GELU", "Erf": "GELU",
              "Softmax": "softmax", "LayerNormalization": "layer norms",
              "SkipLayerNormalization": "layer norms", "Add": "adds and scales",
              "Mul": "adds and scales", "Div": "adds and scales",
              "Conv": "patch embedding, position resampling",
              "Resize": "patch embedding, position resampling"}
ORT_OTHER = "transposes, reshapes, concats, other"


def profile_ort(arch: str, images: int, rounds: int) -> tuple[dict[str, float], float]:
    """The same images through ONNX Runtime on one thread (transformers' model exported as
    bench/embedding.py exports it), its own profiler's kernel times summed by operator group:
    ms per image, median over rounds after a warm-up run; the whole forward, not only the
    blocks."""
    import tempfile

    import onnxruntime as ort

    from bench.embedding import export_onnx

    with tempfile.TemporaryDirectory(prefix="onnx-") as tmp:
        path = Path(tmp) / f"{arch}.onnx"
        export_onnx(arch, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        pixels = np.random.default_rng(1).standard_normal((images, 3, 224, 224)).astype(
            np.float32)
        for _ in range(rounds + 1):
            session.run(["last_hidden_state"], {"pixel_values": pixels})
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
    samples: dict[str, list[float]] = defaultdict(list)
    for start, end in runs[1:]:
        spent: dict[str, float] = defaultdict(float)
        for e in events:
            if (e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
                    and start <= e["ts"] <= end):
                group = ORT_GROUPS.get(e["args"].get("op_name", ""), ORT_OTHER)
                spent[group] += e["dur"] / 1000 / images
        for group, ms in spent.items():
            samples[group].append(ms)
    medians = {group: float(np.median(ms)) for group, ms in samples.items()}
    return medians, sum(medians.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--print-only", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--ort-child", help=argparse.SUPPRESS)
    parser.add_argument("--split-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(profile(args.child, args.images, args.rounds)))
        return
    if args.split_child:
        print(json.dumps([profile_split(args.split_child, args.rounds),
                          product_halves(args.split_child),
                          product_winograd(args.split_child)]))
        return
    if args.ort_child:
        print(json.dumps(profile_ort(args.ort_child, args.images, args.rounds)))
        return
    archs = ("dinov2_vits14", "dinov2_vitb14")
    # (label, environment): the kernels in effect, then those OpenBLAS detects when an
    # OPENBLAS_CORETYPE chose others
    runs: list[tuple[str, dict[str, str]]] = [(CORETYPE or "detected", dict(os.environ))]
    if CORETYPE:
        runs.append(("detected", {k: v for k, v in os.environ.items() if k != CORETYPE_ENV}))
    results: dict[tuple[str, str], tuple[dict[str, float], float]] = {}
    for arch in archs:
        for label, env in runs:
            done = subprocess.run(
                [sys.executable, __file__, "--child", arch, "--images", str(args.images),
                 "--rounds", str(args.rounds)],
                capture_output=True, text=True, check=True, env=env)
            steps, total = json.loads(done.stdout.strip().splitlines()[-1])
            results[(arch, label)] = (steps, total)
            print(arch, label, {k: round(v, 1) for k, v in steps.items()}, flush=True)
    ort_results: dict[str, tuple[dict[str, float], float]] = {}
    for arch in archs:  # in a child: torch (for the export) never loads in this process
        done = subprocess.run(
            [sys.executable, __file__, "--ort-child", arch, "--images", str(args.images),
             "--rounds", str(args.rounds)], capture_output=True, text=True, check=True)
        ort_results[arch] = json.loads(done.stdout.strip().splitlines()[-1])
        print(arch, "ORT", {k: round(v, 1) for k, v in ort_results[arch][0].items()},
              flush=True)
    split_label, split_env = runs[-1]  # the kernels OpenBLAS detects
    splits: dict[str, dict[str, dict[str, float]]] = {}
    halves: dict[str, list[tuple[str, float, float, float]]] = {}
    winograd: dict[str, list[tuple[str, float, float, float, float]]] = {}
    for arch in archs:
        done = subprocess.run(
            [sys.executable, __file__, "--split-child", arch, "--rounds", str(args.rounds)],
            capture_output=True, text=True, check=True, env=split_env)
        splits[arch], halves[arch], winograd[arch] = json.loads(
            done.stdout.strip().splitlines()[-1])
        print(arch, "split", {kind: round(sum(v.values()), 1)
                              for kind, v in splits[arch].items()}, flush=True)
    columns = [(arch, label) for arch in archs for label, _ in runs]
    rows: list[list[object]] = []
    for step in STEPS:
        row: list[object] = [step]
        for key in columns:
            ms, total = results[key][0][step], results[key][1]
            row.append(f"{ms:.1f} ({ms / total:.0%})")
        rows.append(row)
    rows.append(["all blocks", *(f"**{results[key][1]:.1f}**" for key in columns)])
    ort_rows: list[list[object]] = []
    for group in [*dict.fromkeys(ORT_GROUPS.values()), ORT_OTHER]:
        row = [group]
        for arch in archs:
            ms, total = ort_results[arch][0].get(group, 0.0), ort_results[arch][1]
            row.append(f"{ms:.1f} ({ms / total:.0%})")
        ort_rows.append(row)
    ort_rows.append(["whole forward", *(f"**{ort_results[a][1]:.1f}**" for a in archs)])
    names = {"dinov2_vits14": "ViT-S/14", "dinov2_vitb14": "ViT-B/14"}
    kernels = (f"{CORETYPE_ENV}={CORETYPE} in effect, and those OpenBLAS detects when it is "
               "unset (`detected`)" if CORETYPE else "as OpenBLAS detects")
    body = "\n\n".join([
        f"One thread, {args.images} images of 224x224 (one thread's share of a batch of 8 on "
        "two), random weights, every block of the whole forward; ms per image of each step, "
        f"median of {args.rounds} rounds after a warm-up, and its share. OpenBLAS kernels: "
        f"{kernels}. `attention` is QK^T, softmax and PV of every head; the products are "
        "OpenBLAS sgemm calls. The timed loop is checked against `Dinov2Model.forward`.",
        markdown_table(["step", *(f"{names[a]} {label} ms/image" for a, label in columns)],
                       rows),
        "ONNX Runtime on the same images, one thread, all graph optimisations (transformers' "
        "model exported as bench/embedding.py exports it): its profiler's kernel times by "
        "operator group, ms per image and share, median of the same number of runs after a "
        "warm-up. The whole forward (the patch embedding and the position resampling, which "
        "the exported graph recomputes on every run, included); attention's products are in "
        "`matrix products` here, in `attention` above.",
        markdown_table(["operators", *(f"{names[a]} ORT ms/image" for a in archs)],
                       ort_rows),
    ])
    split_rows: list[list[object]] = []
    for step in (*STEPS, WAIT, "all blocks"):
        row = [f"**{step}**" if step == "all blocks" else step]
        for arch in archs:
            cells = {kind: (sum(v.values()) if step == "all blocks" else v.get(step, 0.0))
                     for kind, v in splits[arch].items()}
            share = f" ({cells['cpu'] / cells['one']:.2f})" if cells["one"] else ""
            row += [f"{cells['one']:.1f}", f"{cells['cpu']:.1f}{share}", f"{cells['wall']:.1f}"]
        split_rows.append(row)
    by_halves = {a: {name: (f"{us:.0f}", f"{r:.2f}", f"{c:.2f}") for name, us, r, c in halves[a]}
                 for a in archs}
    by_wino = {a: {name: (f"{us:.0f}", f"{r:.2f}", f"{e1:.1e} / {e2:.1e}")
                   for name, us, r, e1, e2 in winograd[a]} for a in archs}
    body += "\n\n" + "\n\n".join([
        "Batch 1, one image's 257 rows: one thread running every block on all of them, and "
        "the two threads of the engine's row split (128 and 129 rows each, one barrier per "
        "block), each timing its own steps by its CPU time and by the wall clock (means of "
        f"the two threads), ms per forward, median of {args.rounds} rounds after a warm-up; "
        f"OpenBLAS kernels: {split_label}. `(x)` is a thread's CPU time over one thread's time "
        "on all the rows: 0.50 would be a perfect split. Wall time beyond CPU time is time a "
        "thread did not run: waiting for the interpreter lock after a NumPy call, at the "
        "barrier, or descheduled. Both loops are checked against `Dinov2Model.forward`.",
        markdown_table(["step", *(f"{names[a]} {h}" for a in archs
                                  for h in ("one thread ms", "split: CPU ms per thread",
                                            "split: wall ms per thread"))], split_rows),
        "The same kernels, one thread: each product of a block on 257 rows (us per call), "
        "and the time of a row split's share (128 rows) and of a column split's share (257 "
        "rows, half the output columns) over it, medians of 200 calls:",
        product_table(archs, names, ("257 rows us", "128 rows", "half the columns"),
                      by_halves),
        "Fewer multiplications instead: each product on 1028 rows (one thread's four images "
        "at batch 8) as one sgemm (us per call) and as one level of Strassen-Winograd (7 "
        "products of half the rows, inner dimension and columns in place of 8, the weights' "
        "block sums made beforehand, 11 adds of quarters per call), the Winograd time over "
        "the sgemm's, medians of 30 calls alternating, and each one's largest error against "
        "float64 on inputs of unit variance:",
        product_table(archs, names, ("sgemm us", "Winograd", "error sgemm / Winograd"),
                      by_wino),
    ])
    if args.print_only:
        print(body)
    else:
        write_section("engine-profile", "Embedding engine: where the time goes", body)


if __name__ == "__main__":
    main()
