"""How many CPUs the services may use, and the OpenBLAS kernel choice made before NumPy loads
OpenBLAS.

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

import math
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


def _cgroup_quota_cpus(root: Path) -> float | None:
    """The tightest CPU quota (in CPUs) on this process's cgroup and its ancestors, cgroup v2
    (`cpu.max`) or v1 (`cpu.cfs_quota_us` / `cpu.cfs_period_us`); None when none is set."""
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    base = root / "sys/fs/cgroup"
    quotas: list[float] = []
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _hierarchy, controllers, path = fields
        rel = path.strip().lstrip("/")
        if controllers == "":  # v2: one unified hierarchy (under unified/ on a hybrid host)
            unified = base / "unified" if (base / "unified").is_dir() else base
            for directory in _up_from(unified, rel):
                quotas += _v2_quota(directory / "cpu.max")
        elif "cpu" in controllers.split(","):
            for mount in (base / controllers, base / "cpu,cpuacct", base / "cpu"):
                if mount.is_dir():
                    for directory in _up_from(mount, rel):
                        quotas += _v1_quota(directory)
                    break
    return min(quotas) if quotas else None


def _up_from(mount: Path, rel: str) -> list[Path]:
    """The cgroup's directory and its ancestors up to the mount point. Inside a container
    without a cgroup namespace the path names the host's hierarchy, which the container sees
    at its mount point: a path that does not exist there counts as the mount point itself."""
    parts = [p for p in rel.split("/") if p]
    dirs = [mount.joinpath(*parts[:n]) for n in range(len(parts), 0, -1)]
    return [d for d in dirs if d.is_dir()] + [mount]


def _v2_quota(path: Path) -> list[float]:
    try:
        quota, _, period = path.read_text().strip().partition(" ")
        if quota != "max" and int(quota) > 0 and int(period or "100000") > 0:
            return [int(quota) / int(period or "100000")]
    except (OSError, ValueError):
        pass
    return []


def _v1_quota(directory: Path) -> list[float]:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return []
    return [quota / period] if quota > 0 and period > 0 else []


def available_cpus(root: str | Path = "/") -> int:
    """How many CPUs this process can keep busy: the CPUs it may run on (its affinity mask,
    which `docker --cpuset-cpus` and `taskset` set), capped by its cgroup's CPU quota (which
    Compose's `cpus:` limit sets) rounded up; at least 1. Every thread count the services
    choose by themselves comes from here, not from `os.cpu_count()`, which counts the host's
    CPUs and ignores both. `root` is for tests (a fake /proc and /sys/fs/cgroup)."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _cgroup_quota_cpus(Path(root))
    if quota is not None:
        count = min(count, math.ceil(quota - 1e-9))
    return max(1, count)
