"""Speed of the NumPy DINOv2 engine against transformers' Dinov2Model, side by side.

Same random weights, same thread count, one process: ms per image, ratio ours/torch,
achieved GFLOP/s as a fraction of a float32 2048^3 matmul peak measured in the same run;
then the peak RSS of a process embedding with ViT-B (in a subprocess) and the installed size
of the embedding dependency group. Writes section "embedding" of docs/benchmarks.md.

    .venv/bin/python bench/embedding.py              # full run (about 5 minutes, idle machine)
    .venv/bin/python bench/embedding.py --quick      # proves it works; prints, writes nothing
    .venv/bin/python bench/embedding.py --print-only # full run, table printed, not written
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import markdown_table, write_section
from services.embedding.engine import Dinov2Config, Dinov2Model
from services.embedding.engine.blas import blas_threads


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


def interleaved_ms(fns: dict[str, Callable[[], object]], reps: int) -> dict[str, list[float]]:
    """Wall times in ms of `reps` rounds, each round calling every function once in turn
    (ours, torch, ours, torch, ...), after one warm-up call each: a burst of load from
    other processes then hits both sides instead of one."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000)
    return times


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


def speed_rows(threads: int, reps: int, batches: list[int],
               archs: list[str]) -> tuple[list[list[object]], float]:
    """One row per (arch, batch): medians of interleaved runs; and the matmul peak."""
    import torch

    torch.set_num_threads(threads)
    peak = matmul_peak(threads, 2048)
    print(f"matmul peak 2048^3, {threads} threads: {peak:.0f} GFLOP/s", flush=True)
    rows: list[list[object]] = []
    for arch in archs:
        ours = Dinov2Model.random(arch, seed=0, threads=threads)
        ref = torch_model(ours.config, ours.state_dict_hf("modules"))
        for batch in batches:
            x = np.random.default_rng(1).standard_normal((batch, 3, 224, 224)).astype(np.float32)
            xt = torch.from_numpy(x)

            def run_torch(model: Any = ref, xt: Any = xt) -> None:
                with torch.inference_mode():
                    model(pixel_values=xt)

            def run_ours(model: Dinov2Model = ours, x: np.ndarray = x) -> None:
                model.forward(x)

            times = interleaved_ms({"ours": run_ours, "torch": run_torch}, reps)
            t_ours = float(np.median(times["ours"])) / batch
            t_torch = float(np.median(times["torch"])) / batch
            gflop = flops_per_image(ours.config, 224, 224) / 1e9
            row = [arch, batch, f"{t_ours:.0f}", f"{t_torch:.0f}", f"**{t_ours / t_torch:.2f}**",
                   f"{min(times['ours']) / min(times['torch']):.2f}",
                   f"{gflop / (t_ours / 1000):.0f} ({gflop / (t_ours / 1000) / peak:.0%})",
                   f"{gflop / (t_torch / 1000):.0f} ({gflop / (t_torch / 1000) / peak:.0%})"]
            print(row, f"load {os.getloadavg()[0]:.1f}", flush=True)
            rows.append(row)
        ours.close()
        del ref
    return rows, peak


# VmHWM, not getrusage: Linux carries ru_maxrss across fork+exec, so a child started by this
# (large) process would report the parent's peak.
_RSS_CHILD = """
import json, re, sys, numpy as np
from services.embedding.engine import Dinov2Model
model = Dinov2Model.from_file(sys.argv[1], threads=int(sys.argv[2]))
x = np.zeros((int(sys.argv[3]), 3, 224, 224), np.float32)
model.embed(x)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="ViT-S only, batch 1, 3 rounds; prints, writes no table")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=7, help="interleaved rounds per row")
    parser.add_argument("--print-only", action="store_true",
                        help="full run, but print the section instead of writing it")
    args = parser.parse_args()
    threads = args.threads
    reps = 3 if args.quick else args.reps
    load_before = os.getloadavg()[0]
    archs = ["dinov2_vits14"] if args.quick else ["dinov2_vits14", "dinov2_vitb14"]
    batches = [1] if args.quick else [1, 8]
    rows, peak = speed_rows(threads, reps, batches, archs)
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
        f"under `torch.inference_mode`. {reps} rounds after a warm-up, each round running "
        "ours then torch, so load from other processes hits both; times are medians, "
        "`min ratio` is the ratio of the best runs. GFLOP/s counts matrix products and "
        f"attention, as a fraction of the 2048^3 float32 matmul peak measured in the same run "
        f"({peak:.0f} GFLOP/s, NumPy's OpenBLAS, {threads} threads). Load average (1 min) "
        f"{load_before:.1f} before, {load_after:.1f} after. Targets: ratio <= 1.0 at "
        "batch 1, <= 0.9 at batch 8.",
        markdown_table(["model", "batch", "ours ms/image", "torch ms/image", "ours/torch",
                        "min ratio", "ours GFLOP/s (of peak)", "torch GFLOP/s (of peak)"], rows),
        f"Peak RSS of a process loading {rss_arch} from safetensors and embedding a batch of "
        f"{rss_batch}: **{rss:.0f} MB** for {weights:.0f} MB of float32 weights "
        f"({rss / weights:.2f}x; target <= 1.5x).",
        "Installed size of the embedding group (pyproject `embedding` plus numpy and pillow): "
        + ", ".join(f"{n} {mb:.0f} MB" for n, mb in sizes)
        + f" (total {sum(mb for _, mb in sizes):.0f} MB; no torch).",
    ])
    if args.print_only:
        print(body)
    else:
        write_section("embedding", "Embedding engine: NumPy vs PyTorch", body)


if __name__ == "__main__":
    main()
