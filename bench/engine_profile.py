"""Where the NumPy engine's time goes: one thread, the steps of every block timed apart.

The loop below runs `Dinov2Model.block_step`, the block step of both of the engine's thread
splits, over whole images on one thread, with a clock read after each step (its `tick`); its
output is checked against `Dinov2Model.forward` before anything is reported. Four images is
one thread's share of a batch of 8 on two threads. When an OPENBLAS_CORETYPE is in effect,
the profile also runs in a child process with the kernels OpenBLAS detects. Writes section
"engine-profile" of docs/benchmarks.md.

    .venv/bin/python bench/engine_profile.py              # ViT-S and ViT-B (about 2 minutes)
    .venv/bin/python bench/engine_profile.py --print-only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.cpu import ENV as CORETYPE_ENV
from services.common.cpu import choose_openblas_kernels

CORETYPE = choose_openblas_kernels()  # as `imgsearch` does: before NumPy loads OpenBLAS

import numpy as np  # noqa: E402

from bench._report import markdown_table, write_section  # noqa: E402
from services.embedding.engine import Dinov2Model  # noqa: E402
from services.embedding.engine.blas import blas_threads  # noqa: E402

STEPS = ("QKV product", "fc1 product", "fc2 product", "projection product", "attention",
         "GELU", "layer norms", "bias and residual adds")


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
    args = parser.parse_args()
    if args.child:
        print(json.dumps(profile(args.child, args.images, args.rounds)))
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
    if args.print_only:
        print(body)
    else:
        write_section("engine-profile", "Embedding engine: where the time goes", body)


if __name__ == "__main__":
    main()
