"""OpenBLAS kernel choice before NumPy loads; the CPUs a process may use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.common import cpu
from services.common.cpu import ENV, preferred_coretype

ZEN4 = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
        "flags\t\t: fpu sse2 avx2 fma avx512f avx512dq avx512bw avx512vl\n")
ZEN3 = ZEN4.replace(" avx512f avx512dq avx512bw avx512vl", "")
XEON = ZEN4.replace("AuthenticAMD", "GenuineIntel")
ZEN5 = ZEN4.replace("cpu family\t: 25\nmodel\t\t: 17", "cpu family\t: 26\nmodel\t\t: 2")


@pytest.mark.parametrize(("text", "expected"), [(ZEN4, "Zen"), (ZEN3, None), (XEON, None),
                                                 (ZEN5, None), ("", None)])
def test_preferred_coretype(text: str, expected: str | None) -> None:
    assert preferred_coretype(text) == expected


def _child(code: str, env: dict[str, str]) -> str:
    full = {k: v for k, v in os.environ.items() if k != ENV} | env
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full, check=True, cwd=Path(__file__).resolve().parents[2])
    return done.stdout.strip()


def test_choice_is_set_before_numpy_and_reaches_openblas(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(ZEN4)
    code = ("import os; from services.common.cpu import choose_openblas_kernels as c; "
            f"print(c({str(info)!r})); import numpy; print(os.environ['{ENV}'])")
    assert _child(code, {}).split() == ["Zen", "Zen"]


def test_operator_choice_and_loaded_numpy_are_left_alone(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(ZEN4)
    keep = ("from services.common.cpu import choose_openblas_kernels as c; "
            f"print(c({str(info)!r}))")
    assert _child(keep, {ENV: "Haswell"}) == "Haswell"
    late = ("import os, numpy; from services.common.cpu import choose_openblas_kernels as c; "
            f"print(c({str(info)!r}), os.environ.get('{ENV}'))")
    assert _child(late, {}) == "None None"


def test_missing_cpuinfo_changes_nothing(tmp_path: Path) -> None:
    code = ("import os; from services.common.cpu import choose_openblas_kernels as c; "
            f"print(c({str(tmp_path / 'absent')!r}), os.environ.get('{ENV}'))")
    assert _child(code, {}) == "None None"


# --- available_cpus: affinity capped by the cgroup's CPU quota, on fake /proc and cgroup files


def _fake_root(tmp_path: Path, proc_cgroup: str, files: dict[str, str]) -> Path:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text(proc_cgroup)
    for rel, text in files.items():
        path = tmp_path / "sys/fs/cgroup" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.fixture
def eight_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid: set(range(8)))


@pytest.mark.usefixtures("eight_cpus")
@pytest.mark.parametrize(("cpu_max", "expected"), [
    ("max 100000\n", 8),          # no limit: the affinity mask
    ("150000 100000\n", 2),       # cpus: 1.5 -> 2 threads (rounded up)
    ("200000 100000\n", 2),       # cpus: 2
    ("50000 100000\n", 1),        # cpus: 0.5 -> at least one
    ("1600000 100000\n", 8),      # a quota above the mask: the mask
    ("garbage\n", 8),             # unreadable: no quota
])
def test_cgroup_v2_cpu_max_in_a_container(tmp_path: Path, cpu_max: str, expected: int) -> None:
    # Inside a container with its own cgroup namespace the process is at "/".
    root = _fake_root(tmp_path, "0::/\n", {"cpu.max": cpu_max})
    assert cpu.available_cpus(root) == expected


@pytest.mark.usefixtures("eight_cpus")
def test_cgroup_v2_the_tightest_ancestor_wins(tmp_path: Path) -> None:
    root = _fake_root(tmp_path, "0::/system.slice/app.service\n", {
        "system.slice/cpu.max": "300000 100000\n",
        "system.slice/app.service/cpu.max": "max 100000\n",
        "cpu.max": "max 100000\n",
    })
    assert cpu.available_cpus(root) == 3


@pytest.mark.usefixtures("eight_cpus")
def test_cgroup_v1_cfs_quota(tmp_path: Path) -> None:
    root = _fake_root(tmp_path, "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n", {
        "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "250000\n",
        "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
        "cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
        "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
    })
    assert cpu.available_cpus(root) == 3


@pytest.mark.usefixtures("eight_cpus")
def test_cgroup_v1_container_sees_its_own_cgroup_at_the_mount_point(tmp_path: Path) -> None:
    # No cgroup namespace: /proc/self/cgroup names the host's path, absent inside.
    root = _fake_root(tmp_path, "3:cpu:/docker/0123abcd\n", {
        "cpu/cpu.cfs_quota_us": "100000\n",
        "cpu/cpu.cfs_period_us": "100000\n",
    })
    assert cpu.available_cpus(root) == 1


@pytest.mark.usefixtures("eight_cpus")
def test_cgroup_v1_unlimited_and_no_cgroup_files(tmp_path: Path) -> None:
    root = _fake_root(tmp_path, "3:cpu:/\n", {
        "cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"})
    assert cpu.available_cpus(root) == 8
    assert cpu.available_cpus(tmp_path / "nothing-here") == 8


def test_affinity_mask_caps_the_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `docker run --cpuset-cpus 0,1` / taskset: two CPUs, whatever the host has.
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid: {0, 1})
    root = _fake_root(tmp_path, "0::/\n", {"cpu.max": "max 100000\n"})
    assert cpu.available_cpus(root) == 2


def test_this_process_count_is_within_the_machine() -> None:
    assert 1 <= cpu.available_cpus() <= len(os.sched_getaffinity(0))


@pytest.mark.usefixtures("eight_cpus")
def test_cgroup_v2_on_a_hybrid_host_is_read_under_unified(tmp_path: Path) -> None:
    root = _fake_root(tmp_path, "4:memory:/x\n0::/\n", {"unified/cpu.max": "400000 100000\n"})
    assert cpu.available_cpus(root) == 4
