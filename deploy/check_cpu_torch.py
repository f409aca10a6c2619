"""Fails (exit 1) unless the Python packages under SITE_PACKAGES hold a CPU-only PyTorch:
torch installed, `torch.version.cuda` None, and no `nvidia-*`, `triton` or `pytorch-triton`
distribution beside it. The segmentation image's build runs it on what it installed; the
deployment tests run the same file.

    python deploy/check_cpu_torch.py [--import] SITE_PACKAGES

`torch.version.cuda` is read from torch/version.py without importing torch, so it also works
on a tree whose other dependencies are absent; --import also imports torch from SITE_PACKAGES
(put it first on PYTHONPATH) and checks the loaded module: `torch.version.cuda` None and no
CUDA backend built.
Only the standard library: it runs in the image's build stage before anything else is there.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from pathlib import Path

CUDA_ONLY = ("nvidia-", "triton", "pytorch-triton")


def problems(site: Path, *, do_import: bool = False) -> list[str]:
    found: list[str] = []
    dists = {(d.metadata["Name"] or "").lower().replace("_", "-"): d.version
             for d in importlib.metadata.distributions(path=[str(site)])}
    if "torch" not in dists:
        return [f"no torch distribution under {site}"]
    for name, version in sorted(dists.items()):
        if name.startswith(CUDA_ONLY):
            found.append(f"CUDA-only distribution installed: {name} {version}")
    version_py = site / "torch" / "version.py"
    namespace: dict[str, object] = {}
    try:
        exec(compile(version_py.read_text(), str(version_py), "exec"), namespace)
    except (OSError, SyntaxError, ImportError) as exc:
        found.append(f"cannot read {version_py}: {exc}")
    else:
        if namespace.get("cuda") is not None:
            found.append(f"torch {dists['torch']} is a CUDA build "
                         f"(torch.version.cuda = {namespace['cuda']!r})")
    if do_import:
        import torch

        if not str(Path(torch.__file__).resolve()).startswith(str(site.resolve())):
            found.append(f"imported torch from {torch.__file__}, not from {site}")
        if torch.version.cuda is not None or torch.backends.cuda.is_built():
            found.append(f"imported torch {torch.__version__} has CUDA ({torch.version.cuda})")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site_packages", type=Path)
    parser.add_argument("--import", dest="do_import", action="store_true")
    args = parser.parse_args(argv)
    found = problems(args.site_packages, do_import=args.do_import)
    for line in found:
        print(f"check_cpu_torch: {line}", file=sys.stderr)
    if found:
        print("check_cpu_torch: FAILED: not a CPU-only PyTorch", file=sys.stderr)
        return 1
    print(f"check_cpu_torch: ok: CPU-only torch under {args.site_packages}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
