"""End to end through the gateway, side by side with the engine alone, in one run.

- ingest throughput (upload -> indexed, through the queue and one worker) vs the engine's
  own batch-8 throughput;
- upload-to-searchable latency: one image uploaded on an idle queue, until it is indexed
  (then found by search), vs one engine forward (batch 1);
- search-by-image latency through the gateway vs one engine forward (batch 1).

The engine runs in this process, never at the same time as the stack (they would share the
cores) but interleaved with it: each probe is paired with an engine forward timed just
before it, and each ingest round with engine batches timed just before it, so both sides
of a ratio see the same load. On a machine shared with other work, read the ratios.

Random weights (latency does not depend on the weights' values); images from the demo
gallery's generator (384x288 -> 224x294 model input, the shape the engine is timed at).

    python bench/e2e.py                      # writes the "e2e" section of docs/benchmarks.md
    python bench/e2e.py --rounds 1 --per-round 16 --searches 5 --latency 5 --no-write
    python bench/e2e.py --redis redis://127.0.0.1:6379/0   # the Redis broker instead
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._report import markdown_table, write_section  # noqa: E402
from gallery.generate import generate  # noqa: E402
from tests.helpers.stack import Stack, running_stack  # noqa: E402

INPUT = (224, 294)  # model input of a 384x288 gallery image (short side 224, multiples of 14)
SETTLE_S = 0.3  # after an engine call, before the stack is timed (BLAS threads wind down)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


class Engine:
    """The NumPy engine alone, in this process, on the model input of the gallery images."""

    def __init__(self, model: str) -> None:
        from services.embedding.engine.model import Dinov2Model

        self.engine = Dinov2Model.random(model)
        rng = np.random.default_rng(0)
        self.one: NDArray[np.float32] = rng.standard_normal((1, 3, *INPUT)).astype(np.float32)
        self.eight: NDArray[np.float32] = rng.standard_normal((8, 3, *INPUT)).astype(np.float32)
        self.engine.forward(self.one)
        self.engine.forward(self.eight)

    def forward_ms(self) -> float:
        """One batch-1 forward, in ms."""
        start = time.perf_counter()
        self.engine.forward(self.one)
        spent = (time.perf_counter() - start) * 1000
        time.sleep(SETTLE_S)
        return spent

    def batch8_per_s(self, batches: int) -> float:
        """Images per second over `batches` batch-8 forwards."""
        start = time.perf_counter()
        for _ in range(batches):
            self.engine.forward(self.eight)
        rate = 8 * batches / (time.perf_counter() - start)
        time.sleep(SETTLE_S)
        return rate

    def close(self) -> None:
        self.engine.close()


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


def mean_batch(stack: Stack) -> float:
    """Images per model call of the embedding service so far (its Prometheus histogram)."""
    with stack.internal("embedding") as client:
        text = client.get("/metrics").text
    values = {}
    for name in ("embedding_batch_size_sum", "embedding_batch_size_count"):
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        values[name] = float(match.group(1)) if match else 0.0
    return values["embedding_batch_size_sum"] / max(values["embedding_batch_size_count"], 1.0)


def measure(stack: Stack, engine: Engine, images: list[Path], *, rounds: int, per_round: int,
            latency_n: int, searches: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"ingest": [], "engine8": [], "searchable": [],
                                   "searchable_fwd": [], "search": [], "search_fwd": []}
    with stack.admin_client() as admin:
        # Ingest throughput: rounds of `per_round` images uploaded 16 a request (one job
        # each), each round after the engine's batch-8 rate on as many images.
        for r in range(rounds):
            chunk = images[r * per_round:(r + 1) * per_round]
            out["engine8"].append(engine.batch8_per_s(max(1, per_round // 8)))
            start = time.perf_counter()
            jobs = [upload(admin, chunk[i:i + 16])["job_id"] for i in range(0, len(chunk), 16)]
            for job_id in jobs:
                job = stack.wait_job(admin, job_id, timeout=3600)
                if job["status"] != "succeeded" or job["done"] != job["total"]:
                    raise RuntimeError(f"job {job_id} did not index everything: {job}")
            out["ingest"].append(len(chunk) / (time.perf_counter() - start))
        out["batch"] = [mean_batch(stack)]
        probes = images[rounds * per_round:rounds * per_round + latency_n]
        # Upload-to-searchable, one image at a time on an idle queue.
        for path in probes:
            out["searchable_fwd"].append(engine.forward_ms())
            start = time.perf_counter()
            image_id = upload(admin, [path])["images"][0]["id"]
            end = wait_indexed(admin, image_id)
            out["searchable"].append((end - start) * 1000)
            hits = admin.post("/api/v1/search", data={"image_id": str(image_id), "k": "1"})
            if hits.json()["results"][0]["id"] != image_id:
                raise RuntimeError(f"image {image_id} is indexed but not found by search")
        # Search by image, sequential.
        for path in (images * 2)[:searches]:
            data = path.read_bytes()
            out["search_fwd"].append(engine.forward_ms())
            start = time.perf_counter()
            response = admin.post("/api/v1/search", files={"file": (path.name, data)},
                                  data={"k": "20"})
            response.raise_for_status()
            out["search"].append((time.perf_counter() - start) * 1000)
    return out


def ratio_row(name: str, values: list[float], refs: list[float], ref_name: str,
              unit: str = "ms") -> list[object]:
    """p50 and p95 of `values`, the p50 of the references, and the median of the paired
    ratios."""
    ratios = [v / r for v, r in zip(values, refs, strict=True)]
    return [name, f"{pct(values, 50):.0f} {unit}", f"{pct(values, 95):.0f} {unit}",
            f"{ref_name} {pct(refs, 50):.0f} {unit}", f"{statistics.median(ratios):.2f}x"]


def main() -> None:
    parser = argparse.ArgumentParser(description="end-to-end benchmark")
    parser.add_argument("--model", default="dinov2_vitb14")
    parser.add_argument("--rounds", type=int, default=3, help="ingest rounds")
    parser.add_argument("--per-round", type=int, default=48, help="images per ingest round")
    parser.add_argument("--latency", type=int, default=20, help="upload-to-searchable probes")
    parser.add_argument("--searches", type=int, default=30)
    parser.add_argument("--redis", default="", help="Redis URL: the broker (default: embedded)")
    parser.add_argument("--label", default="", help="a note printed under the table")
    parser.add_argument("--no-write", action="store_true", help="print, do not write the doc")
    args = parser.parse_args()

    total = args.rounds * args.per_round + args.latency
    load_before = os.getloadavg()[0]
    engine = Engine(args.model)
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            images = generate(tmp / "images", per_family=-(-total // 6))[:total]
            redis = ({"redis_url": args.redis, "redis_prefix": f"bench-e2e-{uuid.uuid4().hex[:8]}:"}
                     if args.redis else {})
            with running_stack(tmp, model=args.model, **redis) as stack:
                got = measure(stack, engine, images, rounds=args.rounds,
                              per_round=args.per_round, latency_n=args.latency,
                              searches=args.searches)
    finally:
        engine.close()
    load_after = os.getloadavg()[0]
    ingest, engine8 = got["ingest"], got["engine8"]
    ingest_ratios = [i / e for i, e in zip(ingest, engine8, strict=True)]
    rows: list[list[object]] = [
        [f"ingest throughput ({args.rounds} x {args.per_round} images, 1 worker x2)",
         f"{statistics.median(ingest):.2f} img/s", "",
         f"engine batch 8 {statistics.median(engine8):.2f} img/s",
         f"{statistics.median(ingest_ratios):.2f}x"],
        ratio_row("upload -> searchable (1 image, idle queue)", got["searchable"],
                  got["searchable_fwd"], "engine forward"),
        ratio_row("search by image (gateway, k=20)", got["search"], got["search_fwd"],
                  "engine forward"),
    ]
    broker = "Redis broker" if args.redis else "embedded broker"
    body = (f"Model {args.model} (random weights), input {INPUT[0]}x{INPUT[1]}; SQLite catalog, "
            f"{broker}, one worker (concurrency 2, {8} images per ingest task), all on this "
            "machine. Each probe is paired with an engine forward timed just before it, each "
            "ingest round with engine batches timed just before it; the ratio is the median "
            f"of the paired ratios. {len(got['searchable'])} latency probes, "
            f"{len(got['search'])} searches. During ingest the embedding service ran "
            f"{got['batch'][0]:.1f} images per model call on average; ingest rounds: "
            + ", ".join(f"{i:.2f}/{e:.2f}" for i, e in zip(ingest, engine8, strict=True))
            + " img/s (stack/engine).\n\n"
            + markdown_table(["measure", "p50", "p95", "reference (p50)", "ratio (median)"],
                             rows))
    body += (f"\n\nLoad average (1 min) of the machine: {load_before:.1f} at the start, "
             f"{load_after:.1f} at the end, on {os.cpu_count()} cores"
             + (": other work shared the machine, so absolute times are longer than on an "
                "idle one; the paired ratios are the figures to read."
                if max(load_before, load_after) > (os.cpu_count() or 1) else "."))
    if args.label:
        body += f"\n\n{args.label}"
    print(body)
    if not args.no_write:
        write_section("e2e", "End to end through the gateway", body)


if __name__ == "__main__":
    main()
