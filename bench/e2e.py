"""End to end through the gateway, side by side with the engine alone, in one run.

- upload-to-searchable latency: one image uploaded, until search shows it (p50, p95);
- ingest throughput (upload -> indexed, through the queue and a worker) vs the engine's
  own batch-8 throughput;
- search-by-image latency through the gateway vs one engine forward (batch 1).

Random weights (latency does not depend on the weights' values); images from the demo
gallery's generator (384x288 -> 224x294 model input, the shape the engine is timed at).

    python bench/e2e.py                      # writes the "e2e" section of docs/benchmarks.md
    python bench/e2e.py --images 24 --searches 10 --latency 5 --no-write   # a quick check
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._report import markdown_table, write_section  # noqa: E402
from gallery.generate import generate  # noqa: E402
from tests.helpers.stack import Stack, running_stack  # noqa: E402

INPUT = (224, 294)  # model input of a 384x288 gallery image (short side 224, multiples of 14)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def engine_times(model: str, repeats: int) -> tuple[float, float]:
    """(ms per batch-1 forward, images/s at batch 8) of the NumPy engine in this process."""
    from services.embedding.engine.model import Dinov2Model

    engine = Dinov2Model.random(model)
    rng = np.random.default_rng(0)
    one = rng.standard_normal((1, 3, *INPUT)).astype(np.float32)
    eight = rng.standard_normal((8, 3, *INPUT)).astype(np.float32)
    engine.forward(one)
    singles = []
    for _ in range(repeats):
        start = time.perf_counter()
        engine.forward(one)
        singles.append(time.perf_counter() - start)
    batches = []
    for _ in range(max(2, repeats // 3)):
        start = time.perf_counter()
        engine.forward(eight)
        batches.append(time.perf_counter() - start)
    engine.close()
    return statistics.median(singles) * 1000, 8 / statistics.median(batches)


def upload(client: httpx.Client, paths: list[Path]) -> dict[str, Any]:
    response = client.post("/api/v1/admin/images",
                           files=[("file", (p.name, p.read_bytes())) for p in paths])
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def wait_indexed(client: httpx.Client, image_id: int, timeout: float = 300) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = client.get(f"/api/v1/images/{image_id}").json()
        if row.get("status") == "indexed":
            return time.perf_counter()
        time.sleep(0.02)
    raise TimeoutError(f"image {image_id} not indexed")


def measure(stack: Stack, images: list[Path], latency_n: int, searches: int,
            ) -> dict[str, list[float] | float]:
    out: dict[str, list[float] | float] = {}
    with stack.admin_client() as admin:
        # Ingest throughput: all but the latency probes, in batches of 16.
        bulk, probes = images[latency_n:], images[:latency_n]
        start = time.perf_counter()
        jobs = [upload(admin, bulk[i:i + 16])["job_id"] for i in range(0, len(bulk), 16)]
        for job_id in jobs:
            stack.wait_job(admin, job_id, timeout=3600)
        out["ingest_per_s"] = len(bulk) / (time.perf_counter() - start)
        # Upload-to-searchable, one image at a time on an idle queue.
        latencies = []
        for path in probes:
            start = time.perf_counter()
            image_id = upload(admin, [path])["images"][0]["id"]
            end = wait_indexed(admin, image_id)
            hits = admin.post("/api/v1/search", data={"image_id": str(image_id), "k": "1"})
            assert hits.json()["results"][0]["id"] == image_id
            latencies.append((end - start) * 1000)
        out["searchable_ms"] = latencies
        # Search by image, sequential.
        times = []
        for path in (images * 2)[:searches]:
            data = path.read_bytes()
            start = time.perf_counter()
            response = admin.post("/api/v1/search", files={"file": (path.name, data)},
                                  data={"k": "20"})
            response.raise_for_status()
            times.append((time.perf_counter() - start) * 1000)
        out["search_ms"] = times
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="end-to-end benchmark")
    parser.add_argument("--model", default="dinov2_vitb14")
    parser.add_argument("--images", type=int, default=120, help="images ingested in bulk")
    parser.add_argument("--latency", type=int, default=20, help="upload-to-searchable probes")
    parser.add_argument("--searches", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=10, help="engine forwards timed")
    parser.add_argument("--label", default="", help="a note printed under the table")
    parser.add_argument("--no-write", action="store_true", help="print, do not write the doc")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        per_family = -(-(args.images + args.latency) // 6)
        images = generate(tmp / "images", per_family=per_family)[: args.images + args.latency]
        before = engine_times(args.model, args.repeats)
        with running_stack(tmp, model=args.model) as stack:
            got = measure(stack, images, args.latency, args.searches)
        after = engine_times(args.model, args.repeats)
    # The engine is timed before and after the stack runs (not during: they would share
    # the cores); the faster of the two is the reference.
    forward_ms, engine_per_s = min(before[0], after[0]), max(before[1], after[1])
    searchable = got["searchable_ms"]
    search = got["search_ms"]
    assert isinstance(searchable, list) and isinstance(search, list)
    ingest = float(got["ingest_per_s"])  # type: ignore[arg-type]
    rows: list[list[object]] = [
        ["upload -> searchable (1 image, idle queue)", f"{pct(searchable, 50):.0f} ms",
         f"{pct(searchable, 95):.0f} ms", f"engine forward {forward_ms:.0f} ms",
         f"{pct(searchable, 50) / forward_ms:.1f}x"],
        ["search by image (gateway, k=20)", f"{pct(search, 50):.0f} ms",
         f"{pct(search, 95):.0f} ms", f"engine forward {forward_ms:.0f} ms",
         f"{pct(search, 50) / forward_ms:.2f}x"],
        [f"ingest throughput ({args.images} images, 1 worker x2)", f"{ingest:.2f} img/s", "",
         f"engine batch 8: {engine_per_s:.2f} img/s", f"{ingest / engine_per_s:.2f}x"],
    ]
    body = (f"Model {args.model} (random weights), input {INPUT[0]}x{INPUT[1]}; SQLite catalog, "
            "embedded broker, one worker (concurrency 2), all on this machine. "
            f"{len(searchable)} latency probes, {len(search)} searches.\n\n"
            + markdown_table(["measure", "p50", "p95", "reference", "ratio (p50)"], rows))
    if args.label:
        body += f"\n\n{args.label}"
    print(body)
    if not args.no_write:
        write_section("e2e", "End to end through the gateway", body)


if __name__ == "__main__":
    main()
