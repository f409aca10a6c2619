"""Peak memory of the gateway and the embedding service under 8 concurrent hostile small files
(a 77 KB 16-bit 6300x6300 PNG of zeros, a 35-byte GIF declaring 6300x6300), sent to
/api/v1/search (decoded by the embedding service) and /api/v1/search/sketch (decoded by the
gateway). Side by side in one run: the shipped limits against the same code with the limits
lifted (no decode budget, no reduce on decode, sketches up to 40 MP), which is how the
services behaved before the limits except for the float64 conversion (gone in both).

    .venv/bin/python bench/hostile.py              # writes the table to docs/benchmarks.md
    .venv/bin/python bench/hostile.py --dry-run    # prints it only
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import markdown_table, write_section
from tests.helpers.hostile import gif_bomb, hammer, peak_rss_mb, png16_zeros
from tests.helpers.stack import Stack, running_stack

SHIPPED: dict[str, str] = {}
LIFTED = {"IMGSEARCH_DECODE_BUDGET_MB": "1000000", "IMGSEARCH_EMBEDDING_DECODE_MIN_SIDE": "0",
          "IMGSEARCH_GATEWAY_MAX_SKETCH_PIXELS": "40000000"}


def hostile_rounds(concurrency: int = 8) -> list[list[tuple[str, str, bytes]]]:
    """Two rounds of `concurrency` requests: searches, then sketches (3 PNGs to 1 GIF)."""
    png, gif = png16_zeros(), gif_bomb()
    files = [("zeros.png", png) if i % 4 else ("bomb.gif", gif) for i in range(concurrency)]
    return [[("/api/v1/search", name, data) for name, data in files],
            [("/api/v1/search/sketch", name, data) for name, data in files]]


def measure(stack: Stack, concurrency: int = 8) -> dict[str, Any]:
    """Peak RSS (MB) of gateway and embedding before and after the hostile rounds, and the
    status codes answered."""
    pids = {name: stack.processes[name].proc.pid for name in ("gateway", "embedding")}  # type: ignore[union-attr]
    before = {name: peak_rss_mb(pid) for name, pid in pids.items()}
    codes: Counter[int] = Counter()
    for requests in hostile_rounds(concurrency):
        codes.update(hammer(stack.url, requests, concurrency))
    after = {name: peak_rss_mb(pid) for name, pid in pids.items()}
    return {"before": before, "after": after, "codes": dict(sorted(codes.items()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print, do not write the doc")
    args = parser.parse_args()
    rows: list[list[object]] = []
    for label, env in (("shipped limits", SHIPPED), ("limits lifted", LIFTED)):
        with tempfile.TemporaryDirectory() as tmp, \
                running_stack(Path(tmp), worker=False, extra_env=env) as stack:
            result = measure(stack)
        for name in ("gateway", "embedding"):
            b, a = result["before"][name], result["after"][name]
            rows.append([label, name, f"{b:.0f}", f"{a:.0f}", f"{a - b:+.0f}",
                         " ".join(f"{c}x{n}" for c, n in result["codes"].items())
                         if name == "gateway" else ""])
        print(label, result, flush=True)
    table = markdown_table(["configuration", "process", "peak RSS before (MB)",
                            "peak RSS after (MB)", "increase (MB)", "answers (status x count)"],
                           rows)
    body = f"""8 concurrent requests to `/api/v1/search`, then 8 to `/api/v1/search/sketch`, each a
77 KB 16-bit 6300x6300 PNG of zeros or (one in four) a 35-byte GIF declaring 6300x6300;
peak RSS is the kernel's high-water mark (VmHWM) of each process. Shipped limits:
`decode_budget_mb` 512, `embedding.decode_min_side` 896, `gateway.max_sketch_pixels`
8 MP. Lifted: no budget, full-size decodes, sketches up to 40 MP (the code before these
limits also turned 16-bit pixels into float64, 8 bytes a pixel: it used more than "lifted").
The machine was shared with other jobs during the run: memory figures are per process and
not affected, the mix of answers can be (a 503 is a search shed by the search gate, or a
decode that waited past `decode_wait_s`).

{table}

Reproduce: `.venv/bin/python bench/hostile.py`. The test
`tests/gateway/test_decode_memory.py` asserts the bound (embedding: increase below
`decode_budget_mb` + 128 MB; gateway: below 128 MB) with a 256 MB budget."""
    if args.dry_run:
        print(body)
    else:
        write_section("hostile", "Hostile small files: peak memory", body)
        print(body)


if __name__ == "__main__":
    main()
