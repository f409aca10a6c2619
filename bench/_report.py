"""Shared by the benchmark scripts: the machine description and writing one section of
docs/benchmarks.md (between `<!-- bench:NAME -->` markers) without touching the others."""

from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Every table here is written by a script in `bench/` (`make bench` runs them all); each
section says the machine and the date it ran on. Comparisons are side by side in one run:
read the ratios, not the absolute times (machines vary by +-20% from run to run).
"""


def machine() -> str:
    """One line: CPU model (with its family, model number and widest vector extension, as
    virtual machines often report only "AMD EPYC"), cores, memory, Python and NumPy."""
    cpu = platform.processor() or platform.machine()
    try:
        info: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
            if not line.strip():
                break
        if "model name" in info:
            flags = info.get("flags", "").split()
            vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"
            cpu = (f"{info['model name']} (family {info.get('cpu family', '?')} model "
                   f"{info.get('model', '?')}, {vector})")
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import numpy as np

    return (f"{cpu}, {os.cpu_count()} cores, {mem_gb:.0f} GB RAM, Python "
            f"{platform.python_version()}, NumPy {np.__version__}")


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, title: str, body: str) -> None:
    """Replace (or append) section `name` of docs/benchmarks.md."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    block = (f"<!-- bench:{name} -->\n## {title}\n\nMachine: {machine()}. Run: {stamp}.\n\n"
             f"{body.strip()}\n<!-- /bench:{name} -->")
    text = DOC.read_text() if DOC.exists() else HEADER
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->",
                         re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else (
        text.rstrip() + "\n\n" + block + "\n")
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
