"""Speed of the NumPy DINOv2 engine against ONNX Runtime and transformers, side by side.

Same random weights, same thread count: ms per image of ours (as served, CLS features, and
computing the whole last hidden state as the others do), of ONNX Runtime running
transformers' Dinov2Model exported with `torch.onnx.export` (opset 17), and of that model in
torch; ratios ours/ORT and ours/torch; achieved GFLOP/s as a fraction of a float32 2048^3
matmul peak measured in the same rounds; then the peak RSS of a process embedding with ViT-B
(in a subprocess) and the installed size of the embedding dependency group. Writes section
"embedding" of docs/benchmarks.md.

    .venv/bin/python bench/embedding.py              # full run (about 30 minutes, idle machine)
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
import tempfile
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


def export_onnx(arch: str, path: Path) -> float:
    """In this (child) process: transformers' Dinov2Model with ours' random weights -> ONNX
    (opset 17, batch size dynamic) at `path`; returns the max abs difference of ONNX Runtime's
    last hidden state from torch's on two images (the export computes the same function)."""
    import torch

    ours = Dinov2Model.random(arch, seed=0, threads=1)
    ref: Any = torch_model(ours.config, ours.state_dict_hf("modules"))
    ours.close()
    x = np.random.default_rng(2).standard_normal((2, 3, 224, 224)).astype(np.float32)
    torch.onnx.export(ref, (torch.from_numpy(x[:1]),), str(path), opset_version=17,
                      input_names=["pixel_values"], output_names=["last_hidden_state"],
                      dynamic_axes={"pixel_values": {0: "batch"}}, dynamo=False)
    with torch.inference_mode():
        expected = ref(pixel_values=torch.from_numpy(x)).last_hidden_state.numpy()
    got = ort_session(path, 2).run(["last_hidden_state"], {"pixel_values": x})[0]
    return float(np.abs(got - expected).max())


def ort_session(path: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session: `threads` intra-op threads, all graph optimisations."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


SGEMM_N = 2048


def child_times(side: str, arch: str, batch: int, threads: int, reps: int,
                onnx_dir: Path | None = None) -> list[float]:
    """In this (child) process: ms per forward of one side after a warm-up call (for side
    `sgemm`: GFLOP/s of float32 2048^3 matmuls with `threads` BLAS threads)."""
    if side == "sgemm":
        a = np.random.default_rng(0).standard_normal((SGEMM_N, SGEMM_N), dtype=np.float32)
        c = np.empty_like(a)
        with blas_threads(threads):
            ms = _time(lambda: np.matmul(a, a, out=c), reps)
        return [2 * SGEMM_N**3 / (t / 1000) / 1e9 for t in ms]
    x = np.random.default_rng(1).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    if side == "ort":
        assert onnx_dir is not None
        session = ort_session(onnx_dir / f"{arch}.onnx", threads)

        def run() -> None:
            session.run(["last_hidden_state"], {"pixel_values": x})

        return _time(run, reps)
    ours = Dinov2Model.random(arch, seed=0, threads=threads)
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
    return _time(run, reps)


def _time(run: Callable[[], object], reps: int) -> list[float]:
    """ms of each of `reps` calls after a warm-up call."""
    run()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return times


def flops_cls(config: Dinov2Config, h: int, w: int) -> float:
    """Multiply-adds x 2 of `embed`'s CLS-only forward: every block but the last over all
    tokens, the last for the CLS token alone (2 T D per head + 12 D^2, `_cls_block`)."""
    n = (h // 14) * (w // 14)
    t = 1 + config.num_registers + n
    d, hid = config.dim, config.mlp_hidden
    ffn = d * 2 * hid + hid * d if config.mlp == "swiglu" else 2 * d * hid
    per_layer = t * (3 * d * d + d * d + ffn) + 2 * t * t * d
    last = 2 * t * d * config.heads + 4 * d * d + ffn
    return flops_per_image(config, h, w) - 2.0 * (per_layer - last)


SIDES = ("ours", "ours_full", "ort", "torch")


def speed_rows(threads: int, rounds: int, batches: list[int], archs: list[str],
               detected: str | None, onnx_dir: Path,
               wanted: tuple[str, ...] = SIDES,
               on_row: Callable[[list[list[object]]], None] | None = None) -> list[list[object]]:
    """One row per (arch, batch). Each round runs every side in a fresh child process (so no
    side's threads, spinning or sleeping, share a process with another's): ours (CLS
    features), ours (the whole last hidden state), ONNX Runtime, torch, ours with OpenBLAS'
    `detected` kernels when given, and the 2048^3 sgemm peak; the order reverses every other
    round. Times are medians over all timed calls; the peak is the median of the rounds'.
    `wanted` leaves sides out (ours and ORT always run); their cells read "-"."""
    rows: list[list[object]] = []
    for arch in archs:
        config = _config(arch)
        for batch in batches:
            reps = 5 if batch == 1 else 3
            sides = (*(side for side in SIDES if side in {"ours", "ort", *wanted}),
                     *(("ours_detected",) if detected else ()), "sgemm")
            times: dict[str, list[float]] = {side: [] for side in sides}
            paired: list[float] = []  # per round: ours / ORT of that round's medians
            paired_detected: list[float] = []  # the same for ours with the detected kernels
            for round_ in range(rounds):
                round_ms: dict[str, float] = {}
                for side in sides if round_ % 2 == 0 else sides[::-1]:
                    env = os.environ | ({CORETYPE_ENV: detected}
                                        if side == "ours_detected" and detected else {})
                    done = subprocess.run(
                        [sys.executable, __file__, "--child", side, arch, str(batch),
                         str(threads), str(reps), "--onnx-dir", str(onnx_dir)],
                        capture_output=True, text=True, check=True, env=env)
                    got = json.loads(done.stdout.strip().splitlines()[-1])
                    times[side] += got
                    round_ms[side] = float(np.median(got))
                paired.append(round_ms["ours"] / round_ms["ort"])
                if detected:
                    paired_detected.append(round_ms["ours_detected"] / round_ms["ort"])
            ms = {side: float(np.median(times[side])) / batch for side in sides if side != "sgemm"}
            peak = float(np.median(times["sgemm"]))
            full, cls = flops_per_image(config, 224, 224) / 1e9, flops_cls(config, 224, 224) / 1e9

            has_full, has_torch = "ours_full" in ms, "torch" in ms
            row = [arch, batch, f"{ms['ours']:.0f}",
                   f"{ms['ours_full']:.0f}" if has_full else "-",
                   f"{ms['ort']:.0f}", f"{ms['torch']:.0f}" if has_torch else "-",
                   f"**{ms['ours'] / ms['ort']:.2f}**",
                   f"{float(np.median(paired)):.2f} ({min(paired):.2f}-{max(paired):.2f})",
                   f"{ms['ours_full'] / ms['ort']:.2f}" if has_full else "-",
                   f"{ms['ours'] / ms['torch']:.2f}" if has_torch else "-",
                   f"{peak:.0f}", _rate(cls, ms["ours"], peak),
                   _rate(full, ms["ours_full"], peak) if has_full else "-",
                   _rate(full, ms["ort"], peak)]
            if detected:
                row += [f"{ms['ours_detected']:.0f}", f"{ms['ours_detected'] / ms['ort']:.2f}",
                        f"{float(np.median(paired_detected)):.2f} "
                        f"({min(paired_detected):.2f}-{max(paired_detected):.2f})"]
            print(row, f"load {os.getloadavg()[0]:.1f}", flush=True)
            rows.append(row)
            if on_row is not None:
                on_row(rows)
    return rows


def _rate(gflop: float, ms: float, peak: float) -> str:
    """GFLOP/s of `gflop` done in `ms`, and its fraction of `peak`."""
    achieved = gflop / (ms / 1000)
    return f"{achieved:.0f} ({achieved / peak:.0%})"


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
    parser.add_argument("--reps", type=int, default=5,
                        help="rounds per row (each: one child process per side)")
    parser.add_argument("--archs", default="dinov2_vits14,dinov2_vitb14")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--sides", default=",".join(SIDES),
                        help="sides to run besides ours and ORT (ours_full, torch)")
    parser.add_argument("--child", nargs=5, metavar=("SIDE", "ARCH", "BATCH", "THREADS", "REPS"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--onnx-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--export", nargs=2, metavar=("ARCH", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--print-only", action="store_true",
                        help="full run, but print the section instead of writing it")
    args = parser.parse_args()
    if args.child:
        side, arch, batch, threads, reps = args.child
        print(json.dumps(child_times(side, arch, int(batch), int(threads), int(reps),
                                     args.onnx_dir)))
        return
    if args.export:
        print(json.dumps(export_onnx(args.export[0], Path(args.export[1]))))
        return
    threads = args.threads
    reps = 3 if args.quick else args.reps
    load_before = os.getloadavg()[0]
    archs = ["dinov2_vits14"] if args.quick else args.archs.split(",")
    batches = [1] if args.quick else [int(b) for b in args.batches.split(",")]
    kernels = kernel_rows(3 if args.quick else 5)
    detected = kernels[2] if kernels is not None and kernels[2] != CHOSEN_CORETYPE else None
    workdir = Path(os.environ.get("TMPDIR", "/tmp"))
    rss_arch = "dinov2_vits14" if args.quick else "dinov2_vitb14"
    rss_batch = 1 if args.quick else 8
    rss, weights = peak_rss(rss_arch, threads, rss_batch, workdir)
    print(f"peak RSS {rss_arch}: {rss:.0f} MB for {weights:.0f} MB of weights", flush=True)
    sizes = installed_mb(embedding_group())
    print(sizes, flush=True)
    left_out = [side for side in SIDES if side not in {"ours", "ort", *args.sides.split(",")}]
    expected_rows = len(archs) * len(batches)

    def report(rows: list[list[object]]) -> None:
        """Write the section with the rows measured so far (after every row, so a run
        stopped early leaves what it measured, saying so)."""
        load_after = os.getloadavg()[0]
        partial = (f"**Partial: {len(rows)} of {expected_rows} rows; the run stopped or is "
                   "still going.** " if len(rows) < expected_rows else "")
        body = "\n\n".join([
            partial + "Input 224x224, float32, random weights (the same for every side), "
            f"{threads} threads for every side. `ORT` is ONNX Runtime "
            f"{md.version('onnxruntime')} (CPU execution provider, {threads} intra-op threads, "
            "all graph optimisations) running transformers' `Dinov2Model` exported with "
            f"`torch.onnx.export` (opset 17; its output checked against torch's, max abs "
            f"difference below 1e-4); `torch` is that model in torch {md.version('torch')} under "
            "`torch.inference_mode` (`torch.set_num_threads`). Two ways for ours (the engine's "
            "`threads`): `ours` is `embed` as the service runs it for CLS features (its default "
            "request), which computes the last block for the CLS token alone "
            "(docs/embedding-engine.md); `ours full` is `forward`, the whole last hidden state, "
            "the same work as ORT's and torch's. "
            f"{reps} rounds; each runs every side in a fresh process (5 timed calls at batch 1, "
            "3 at batch 8, after a warm-up), the order reversed every other round, so load from "
            "other processes hits every side and no side's idle threads share a process with "
            "another's; times are medians; `paired` is the median over rounds of ours/ORT "
            "within a round, with its range. Each round also measures the float32 2048^3 sgemm "
            f"peak (NumPy's OpenBLAS, {threads} threads) in a process of its own; the row's peak "
            "is the median of its rounds, and GFLOP/s count matrix products and attention (for "
            "`ours`, the work of the CLS-only last block instead of the whole one). "
            + (f"`ours, detected kernels` is `ours` with the OpenBLAS kernels it detects "
               f"({detected}) instead of those in effect ({CORETYPE_ENV}={CHOSEN_CORETYPE}, table "
               "below), as another process of each round, paired with ORT by round as `ours` "
               "is. " if detected else "")
            + (f"Left out of this run (`--sides`): {', '.join(left_out)}; their cells read `-`. "
               if left_out else "")
            + f"Load average (1 min) {load_before:.1f} before, {load_after:.1f} after"
            + (": the machine was shared with other jobs, read the ratios within rows. "
               if max(load_before, load_after) > 1.5 * threads else ". ")
            + "Targets: ours/ORT <= 0.85 at batch 1 and 8; ours at >= 85% of the sgemm peak at "
            "batch 8.",
            markdown_table(["model", "batch", "ours ms/image", "ours full ms/image",
                            "ORT ms/image", "torch ms/image", "ours/ORT", "paired (range)",
                            "ours full/ORT", "ours/torch", "sgemm peak GFLOP/s",
                            "ours GFLOP/s (of peak)", "ours full GFLOP/s (of peak)",
                            "ORT GFLOP/s (of peak)",
                            *(["ours, detected kernels ms/image", "ours, detected kernels/ORT",
                               "ours, detected kernels/ORT paired (range)"]
                              if detected else [])], rows),
            f"Peak RSS of a process loading {rss_arch} from safetensors and embedding a batch of "
            f"{rss_batch}: **{rss:.0f} MB** for {weights:.0f} MB of float32 weights "
            f"({rss / weights:.2f}x; target <= 1.5x).",
            "Installed size of the embedding group (pyproject `embedding` plus numpy and pillow): "
            + ", ".join(f"{n} {mb:.0f} MB" for n, mb in sizes)
            + f" (total {sum(mb for _, mb in sizes):.0f} MB; no torch, no ONNX Runtime).",
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
            write_section("embedding", "Embedding engine: NumPy vs ONNX Runtime and PyTorch", body)

    with tempfile.TemporaryDirectory(prefix="onnx-") as onnx_dir:
        for arch in archs:  # in a child: this process never loads torch
            done = subprocess.run([sys.executable, __file__, "--export", arch,
                                   str(Path(onnx_dir) / f"{arch}.onnx")],
                                  capture_output=True, text=True, check=True)
            diff = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{arch} exported to ONNX; ORT vs torch max abs difference {diff:.2g}",
                  flush=True)
            if not diff < 1e-4:
                raise SystemExit(f"{arch}: ONNX Runtime does not compute torch's model")
        speed_rows(threads, reps, batches, archs, detected, Path(onnx_dir),
                   tuple(args.sides.split(",")), on_row=None if args.quick else report)


if __name__ == "__main__":
    main()
