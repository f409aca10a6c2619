"""Speed of the NumPy DINOv2 engine against transformers' Dinov2Model, side by side.

Same random weights, same thread count: ms per image, ratio ours/torch (ours as served, CLS
features, and ours computing the whole last hidden state as torch does),
achieved GFLOP/s as a fraction of a float32 2048^3 matmul peak measured in the same run;
then the peak RSS of a process embedding with ViT-B (in a subprocess) and the installed size
of the embedding dependency group. Writes section "embedding" of docs/benchmarks.md.

    .venv/bin/python bench/embedding.py              # full run (about 20 minutes, idle machine)
    .venv/bin/python bench/embedding.py --quick      # proves it works; prints, writes nothing
    .venv/bin/python bench/embedding.py --print-only # full run, table printed, not written

On AMD Zen 4 the script (like `imgsearch`) asks OpenBLAS for its Zen kernels; an
OPENBLAS_CORETYPE set in the environment is kept, as `imgsearch` keeps it. Whenever kernels
other than OpenBLAS' own choice are in effect, the script also measures the detected ones: the
engine's products (table "OpenBLAS kernels") and the engine itself (column "ours, detected
kernels").
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.cpu import ENV as CORETYPE_ENV
from services.common.cpu import choose_openblas_kernels

# as `imgsearch` does: before NumPy loads OpenBLAS
FROM_ENVIRONMENT = CORETYPE_ENV in os.environ
CHOSEN_CORETYPE = choose_openblas_kernels()

import numpy as np  # noqa: E402

from bench._report import markdown_table, write_section  # noqa: E402
from services.embedding.engine import Dinov2Config, Dinov2Model  # noqa: E402
from services.embedding.engine.blas import blas_threads  # noqa: E402

# The engine's products at batch 1 (257 rows) and one thread's share of batch 8 (1028 rows):
# QKV, fc1, fc2 of ViT-B/14.
GEMM_SHAPES = [(m, k, n) for m in (257, 1028) for k, n in ((768, 2304), (768, 3072),
                                                           (3072, 768))]
GEMM_CHILD = """
import json, sys, time
import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits
threadpool_limits(1)
rng = np.random.default_rng(0)
out = {"kernels": [i.get("architecture") for i in threadpool_info()
                   if i.get("internal_api") == "openblas"]}
for m, k, n in json.loads(sys.argv[1]):
    a = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32)
    c = np.empty((m, n), np.float32)
    np.matmul(a, w.T, out=c)
    times = []
    for _ in range(15):
        t = time.perf_counter(); np.matmul(a, w.T, out=c); times.append(time.perf_counter() - t)
    out[f"{m}x{k}x{n}"] = 2 * m * k * n / sorted(times)[7] / 1e9
print(json.dumps(out))
"""


def flops_per_image(config: Dinov2Config, h: int, w: int) -> float:
    """Multiply-adds x 2 of one forward (matrix products and attention)."""
    n = (h // 14) * (w // 14)
    t = 1 + config.num_registers + n
    d, hid = config.dim, config.mlp_hidden
    ffn = d * 2 * hid + hid * d if config.mlp == "swiglu" else 2 * d * hid
    per_layer = t * (3 * d * d + d * d + ffn) + 2 * t * t * d
    return 2.0 * (n * 3 * 14 * 14 * d + config.depth * per_layer)


def best_ms(fn: Callable[[], object], reps: int) -> float:
    """Best wall time of `reps` calls after a warm-up, in ms."""
    fn()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def matmul_peak(threads: int, n: int) -> float:
    """GFLOP/s of a float32 n^3 matmul with `threads` BLAS threads (best of 5)."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    out = np.empty_like(a)
    with blas_threads(threads):
        ms = best_ms(lambda: np.matmul(a, a, out=out), 5)
    return 2 * n**3 / (ms / 1000) / 1e9


def torch_model(config: Dinov2Config, state: dict[str, np.ndarray]) -> object:
    import torch
    from transformers import Dinov2Config as HFConfig
    from transformers import Dinov2Model as HFModel

    hf = HFModel(HFConfig(hidden_size=config.dim, num_hidden_layers=config.depth,
                          num_attention_heads=config.heads, image_size=518, patch_size=14,
                          layer_norm_eps=1e-6)).eval()
    # state_dict_hf("modules") is in transformers' module names: load it directly
    hf.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=True)
    return hf


def child_times(side: str, arch: str, batch: int, threads: int, reps: int) -> list[float]:
    """In this (child) process: ms per forward of one side after a warm-up call."""
    ours = Dinov2Model.random(arch, seed=0, threads=threads)
    x = np.random.default_rng(1).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    if side in ("ours", "ours_detected"):  # the latter runs with other OpenBLAS kernels
        def run() -> None:
            ours.embed(x)  # CLS features, as the service computes them by default
    elif side == "ours_full":
        def run() -> None:
            ours.forward(x)  # the whole last hidden state, as torch computes it
    else:
        import torch

        torch.set_num_threads(threads)
        ref: Any = torch_model(ours.config, ours.state_dict_hf("modules"))
        ours.close()
        xt = torch.from_numpy(x)

        def run() -> None:
            with torch.inference_mode():
                ref(pixel_values=xt)
    run()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return times


def speed_rows(threads: int, rounds: int, batches: list[int], archs: list[str],
               detected: str | None) -> tuple[list[list[object]], float]:
    """One row per (arch, batch): each round runs ours (CLS features), ours (the whole last
    hidden state), then torch, each in a fresh child process (so neither side's threads,
    spinning or sleeping, share a process with another's), and ours again with OpenBLAS'
    `detected` kernels when given; medians over all timed calls; and the matmul peak."""
    peak = matmul_peak(threads, 2048)
    print(f"matmul peak 2048^3, {threads} threads: {peak:.0f} GFLOP/s", flush=True)
    rows: list[list[object]] = []
    for arch in archs:
        config = _config(arch)
        for batch in batches:
            reps = 5 if batch == 1 else 3
            sides = ("ours", "ours_full", "torch", *(("ours_detected",) if detected else ()))
            times: dict[str, list[float]] = {side: [] for side in sides}
            best: dict[str, list[float]] = {side: [] for side in sides}
            paired: list[float] = []  # per round: ours / torch of that round's medians
            for _ in range(rounds):
                round_ms: dict[str, float] = {}
                for side in sides:
                    env = os.environ | ({CORETYPE_ENV: detected}
                                        if side == "ours_detected" and detected else {})
                    done = subprocess.run(
                        [sys.executable, __file__, "--child", side, arch, str(batch),
                         str(threads), str(reps)],
                        capture_output=True, text=True, check=True, env=env)
                    got = json.loads(done.stdout.strip().splitlines()[-1])
                    times[side] += got
                    best[side].append(min(got))
                    round_ms[side] = float(np.median(got))
                paired.append(round_ms["ours"] / round_ms["torch"])
            t_ours = float(np.median(times["ours"])) / batch
            t_full = float(np.median(times["ours_full"])) / batch
            t_torch = float(np.median(times["torch"])) / batch
            gflop = flops_per_image(config, 224, 224) / 1e9
            row = [arch, batch, f"{t_ours:.0f}", f"{t_full:.0f}", f"{t_torch:.0f}",
                   f"**{t_ours / t_torch:.2f}**",
                   f"{float(np.median(paired)):.2f} ({min(paired):.2f}-{max(paired):.2f})",
                   f"{min(best['ours']) / min(best['torch']):.2f}",
                   f"{t_full / t_torch:.2f}",
                   f"{gflop / (t_full / 1000):.0f} ({gflop / (t_full / 1000) / peak:.0%})",
                   f"{gflop / (t_torch / 1000):.0f} ({gflop / (t_torch / 1000) / peak:.0%})"]
            if detected:
                t_det = float(np.median(times["ours_detected"])) / batch
                row += [f"{t_det:.0f}", f"{t_det / t_torch:.2f}"]
            print(row, f"load {os.getloadavg()[0]:.1f}", flush=True)
            rows.append(row)
    return rows, peak


def _config(arch: str) -> Dinov2Config:
    from services.embedding.engine.config import ARCHITECTURES

    return ARCHITECTURES[arch]


# VmHWM, not getrusage: Linux carries ru_maxrss across fork+exec, so a child started by this
# (large) process would report the parent's peak.
_RSS_CHILD = """
import json, re, sys, numpy as np
from services.embedding.engine import Dinov2Model
model = Dinov2Model.from_file(sys.argv[1], threads=int(sys.argv[2]))
x = np.zeros((int(sys.argv[3]), 3, 224, 224), np.float32)
model.embed(x, mean_pooled=True)  # the whole last hidden state, not the CLS-only path
status = open("/proc/self/status").read()
print(json.dumps({"rss_kb": int(re.search(r"VmHWM:\\s+(\\d+)", status).group(1))}))
"""


def peak_rss(arch: str, threads: int, batch: int, workdir: Path) -> tuple[float, float]:
    """(peak RSS MB of a fresh process loading `arch` from safetensors and embedding a batch,
    weight MB)."""
    from safetensors.numpy import save_file

    model = Dinov2Model.random(arch, seed=0, threads=1)
    path = workdir / f"{arch}.safetensors"
    state = model.state_dict_hf()
    save_file(state, str(path))
    weight_mb = sum(v.nbytes for v in state.values()) / 2**20
    model.close()
    del state
    out = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(path), str(threads), str(batch)],
                         capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    path.unlink()
    return json.loads(out.stdout)["rss_kb"] / 1024, weight_mb


def installed_mb(dists: list[str]) -> list[tuple[str, float]]:
    """Bytes on disk of each distribution's files (site-packages), in MB."""
    out = []
    for name in dists:
        dist = md.distribution(name)
        total = 0
        for file in dist.files or []:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                total += path.stat().st_size
        out.append((name, total / 2**20))
    return out


def embedding_group() -> list[str]:
    """The embedding optional-dependency group of pyproject.toml, plus the base packages the
    engine imports (numpy, pillow)."""
    import re
    import tomllib

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    group = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]["embedding"]
    names = [re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0] for spec in group]
    return ["numpy", "pillow", *[n for n in names if n not in ("numpy", "pillow")]]


def kernel_rows(rounds: int) -> tuple[list[list[object]], str, str] | None:
    """One-thread GFLOP/s of the engine's products with the kernels OpenBLAS detects and with
    the ones in effect (None when that is OpenBLAS' own choice), alternating child processes
    (the choice is read when OpenBLAS loads); also the name of the detected kernels."""
    if not CHOSEN_CORETYPE:
        return None
    env_detect = {k: v for k, v in os.environ.items() if k != CORETYPE_ENV}
    env_chosen = env_detect | {CORETYPE_ENV: CHOSEN_CORETYPE}
    runs: dict[str, list[dict[str, Any]]] = {"detected": [], "chosen": []}
    for _ in range(rounds):
        for name, env in (("detected", env_detect), ("chosen", env_chosen)):
            done = subprocess.run([sys.executable, "-c", GEMM_CHILD, json.dumps(GEMM_SHAPES)],
                                  capture_output=True, text=True, env=env, check=True)
            runs[name].append(json.loads(done.stdout))
    names = {k: "/".join(runs[k][0]["kernels"]) for k in runs}
    rows: list[list[object]] = []
    for m, k, n in GEMM_SHAPES:
        key = f"{m}x{k}x{n}"
        det = sorted(r[key] for r in runs["detected"])[rounds // 2]
        cho = sorted(r[key] for r in runs["chosen"])[rounds // 2]
        rows.append([f"{m} x {k} @ {k} x {n}", f"{det:.0f}", f"{cho:.0f}", f"{cho / det:.2f}"])
        print(rows[-1], flush=True)
    origin = ("set in the environment, kept by `imgsearch` and this script" if FROM_ENVIRONMENT
              else "set by `services/common/cpu.py` in `imgsearch` and this script")
    return rows, (f"detected: {names['detected']}; in effect ({CORETYPE_ENV}={CHOSEN_CORETYPE}, "
                  f"{origin}): {names['chosen']}"), names["detected"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="ViT-S only, batch 1, 3 rounds; prints, writes no table")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=7,
                        help="rounds per row (each: one child process per side)")
    parser.add_argument("--child", nargs=5, metavar=("SIDE", "ARCH", "BATCH", "THREADS", "REPS"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--print-only", action="store_true",
                        help="full run, but print the section instead of writing it")
    args = parser.parse_args()
    if args.child:
        side, arch, batch, threads, reps = args.child
        print(json.dumps(child_times(side, arch, int(batch), int(threads), int(reps))))
        return
    threads = args.threads
    reps = 3 if args.quick else args.reps
    load_before = os.getloadavg()[0]
    archs = ["dinov2_vits14"] if args.quick else ["dinov2_vits14", "dinov2_vitb14"]
    batches = [1] if args.quick else [1, 8]
    kernels = kernel_rows(3 if args.quick else 5)
    detected = kernels[2] if kernels is not None and kernels[2] != CHOSEN_CORETYPE else None
    rows, peak = speed_rows(threads, reps, batches, archs, detected)
    load_after = os.getloadavg()[0]
    workdir = Path(os.environ.get("TMPDIR", "/tmp"))
    rss_arch = "dinov2_vits14" if args.quick else "dinov2_vitb14"
    rss_batch = 1 if args.quick else 8
    rss, weights = peak_rss(rss_arch, threads, rss_batch, workdir)
    print(f"peak RSS {rss_arch}: {rss:.0f} MB for {weights:.0f} MB of weights", flush=True)
    sizes = installed_mb(embedding_group())
    print(sizes, flush=True)
    if args.quick:
        return
    body = "\n\n".join([
        f"Input 224x224, float32, random weights (the same for both), {threads} threads for "
        "both (`torch.set_num_threads`; the engine's `threads`); transformers `Dinov2Model` "
        f"under `torch.inference_mode`. Two ways for ours: `ours` is `embed` as the service "
        "runs it for CLS features (its default request), which computes the last block for "
        "the CLS token alone (docs/embedding-engine.md); `ours full` is `forward`, the whole "
        "last hidden state, the same work as torch's. "
        f"{reps} rounds, each running ours, ours full, then torch, each "
        "side in a fresh process (5 timed calls at batch 1, 3 at batch 8, after a warm-up), "
        "so load from other processes hits every side and no side's idle threads share a "
        "process with another's; times are medians; `paired` is the median over rounds of "
        "ours/torch within a round (the two sides run back to back, so slow drifts of the "
        "machine cancel), with its range; `min ratio` is the ratio of the best "
        "runs. GFLOP/s (of the full forward: ours full and torch) counts matrix products and "
        f"attention, as a fraction of the 2048^3 float32 matmul peak measured in the same run "
        f"({peak:.0f} GFLOP/s, NumPy's OpenBLAS, {threads} threads). "
        + (f"`ours, detected kernels` is `ours` with the OpenBLAS kernels it detects "
           f"({detected}) instead of those in effect ({CORETYPE_ENV}={CHOSEN_CORETYPE}, table "
           "below), as a fourth process of each round. " if detected else "")
        + f"Load average (1 min) "
        f"{load_before:.1f} before, {load_after:.1f} after. Targets: ratio <= 1.0 at "
        "batch 1, <= 0.9 at batch 8.",
        markdown_table(["model", "batch", "ours ms/image", "ours full ms/image",
                        "torch ms/image", "ours/torch", "paired (range)", "min ratio",
                        "ours full/torch",
                        "ours full GFLOP/s (of peak)", "torch GFLOP/s (of peak)",
                        *(["ours, detected kernels ms/image", "ours, detected kernels/torch"]
                          if detected else [])], rows),
        f"Peak RSS of a process loading {rss_arch} from safetensors and embedding a batch of "
        f"{rss_batch}: **{rss:.0f} MB** for {weights:.0f} MB of float32 weights "
        f"({rss / weights:.2f}x; target <= 1.5x).",
        "Installed size of the embedding group (pyproject `embedding` plus numpy and pillow): "
        + ", ".join(f"{n} {mb:.0f} MB" for n, mb in sizes)
        + f" (total {sum(mb for _, mb in sizes):.0f} MB; no torch).",
    ])
    if kernels is not None:
        body += "\n\n" + "\n\n".join([
            f"OpenBLAS kernels (the table above ran with those in effect): {kernels[1]}. One "
            "thread, GFLOP/s of the engine's ViT-B/14 products, medians of 5 child processes "
            "per side, alternating:",
            markdown_table(["product (rows x in @ in x out)", "detected GFLOP/s",
                            "in effect GFLOP/s", "in effect/detected"], kernels[0]),
        ])
    if args.print_only:
        print(body)
    else:
        write_section("embedding", "Embedding engine: NumPy vs PyTorch", body)


if __name__ == "__main__":
    main()
