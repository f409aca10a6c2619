"""OpenBLAS kernel choice before NumPy loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
