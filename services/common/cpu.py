"""OpenBLAS kernel choice, made before NumPy loads OpenBLAS.

OpenBLAS picks its kernels from the CPU at load time. On AMD Zen 4 it sees AVX-512 and takes
the SkylakeX kernels, but its Zen kernels run the engine's float32 products 4-8% faster there
(bench/embedding.py measures both as table "OpenBLAS kernels" when it runs on such a CPU:
1.02-1.10x on the engine's ViT-B products in December 2026; Zen 4 splits each 512-bit
operation in two 256-bit halves). Zen 5 (family 26) executes 512-bit operations whole, and
there the SkylakeX kernels OpenBLAS detects are the fast ones (about 1.9x the Zen kernels'
GFLOP/s per core, measured in December 2026), as on Intel CPUs, which also keep what OpenBLAS
detects. An OPENBLAS_CORETYPE already in the environment is always kept, so an operator's
choice wins.

Imports nothing but the standard library: it must run before `import numpy`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV = "OPENBLAS_CORETYPE"


def preferred_coretype(cpuinfo: str) -> str | None:
    """The kernel type to ask OpenBLAS for, from /proc/cpuinfo's text, or None to let it
    detect: "Zen" for an AMD CPU of family 25 with AVX-512 (Zen 4; Zen 3, the same family,
    has no AVX-512 and is detected as Zen anyway)."""
    vendor, family, flags = "", "", ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and not vendor:
            vendor = value.strip()
        elif key == "cpu family" and not family:
            family = value.strip()
        elif key == "flags" and not flags:
            flags = value
        if vendor and family and flags:
            break
    if vendor == "AuthenticAMD" and family == "25" and "avx512f" in flags.split():
        return "Zen"
    return None


def choose_openblas_kernels(cpuinfo_path: str = "/proc/cpuinfo") -> str | None:
    """Set OPENBLAS_CORETYPE for this process (and its children) when it helps and is not
    set already; returns the value in effect. Does nothing once NumPy is loaded."""
    if ENV in os.environ:
        return os.environ[ENV]
    if "numpy" in sys.modules:
        return None
    try:
        choice = preferred_coretype(Path(cpuinfo_path).read_text(errors="replace"))
    except OSError:
        return None
    if choice:
        os.environ[ENV] = choice
    return choice
