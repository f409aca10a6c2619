"""Embedding service throughput: micro-batching on (max_batch 8) against off (max_batch 1),
side by side in one run, same random weights, same concurrent load over HTTP.

    .venv/bin/python bench/embedding_service.py                 # full run, writes the table
    .venv/bin/python bench/embedding_service.py --quick --dry-run   # a smoke run, prints only
"""

from __future__ import annotations

import argparse
import re
import secrets
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import markdown_table, write_section
from tests.embedding.service_helpers import png
from tests.helpers.procs import ServiceProcess

TOKEN = secrets.token_urlsafe(24)


def _metric_sum_count(text: str, name: str) -> tuple[float, float]:
    total = re.search(rf"^{name}_sum (\S+)$", text, re.M)
    count = re.search(rf"^{name}_count (\S+)$", text, re.M)
    return (float(total.group(1)) if total else 0.0, float(count.group(1)) if count else 0.0)


def _load(proc: ServiceProcess, images: list[bytes], concurrency: int) -> tuple[float, list[float]]:
    """Send every image once with `concurrency` clients; (seconds, per-request latencies)."""
    latencies: list[float] = []

    def one(data: bytes) -> None:
        began = time.perf_counter()
        response = httpx.post(proc.url + "/v1/embed", content=data, timeout=600,
                              headers={"X-Internal-Token": TOKEN,
                                       "Content-Type": "application/octet-stream"})
        response.raise_for_status()
        latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, images))
    return time.perf_counter() - began, latencies


def run(model: str, size: int, requests: int, concurrency: int, root: Path) -> list[list[object]]:
    images = [png(size, size, seed=i) for i in range(requests)]
    rows: list[list[object]] = []
    baseline = None
    for label, max_batch, wait_ms in [("off (max_batch 1)", 1, 0), ("on (max_batch 8)", 8, 5)]:
        proc = ServiceProcess("embedding", {
            "IMGSEARCH_RANDOM_WEIGHTS": "1", "IMGSEARCH_EMBEDDING_MODEL": model,
            "IMGSEARCH_EMBEDDING_WEIGHTS": "", "IMGSEARCH_INTERNAL_TOKEN": TOKEN,
            "IMGSEARCH_DATA_DIR": str(root / "data"), "IMGSEARCH_EMBEDDING_IMAGE_SIZE": str(size),
            "IMGSEARCH_EMBEDDING_MAX_BATCH": str(max_batch),
            "IMGSEARCH_EMBEDDING_MAX_WAIT_MS": str(wait_ms),
            "IMGSEARCH_EMBEDDING_QUEUE_SIZE": str(max(64, requests)),
            "IMGSEARCH_LOG_FORMAT": "text",
        }, root)
        proc.start()
        try:
            _load(proc, images[:2], 1)  # warm up: position embeddings, buffers
            lone, _ = _load(proc, images[:4], 1)
            before = _metric_sum_count(httpx.get(proc.url + "/metrics").text,
                                       "embedding_batch_size")
            seconds, latencies = _load(proc, images, concurrency)
            after = _metric_sum_count(httpx.get(proc.url + "/metrics").text,
                                      "embedding_batch_size")
        finally:
            proc.stop()
        calls = after[1] - before[1]
        mean_batch = (after[0] - before[0]) / calls if calls else float("nan")
        per_s = requests / seconds
        baseline = baseline or per_s
        q = statistics.quantiles(latencies, n=20)
        rows.append([label, f"{lone / 4 * 1000:.0f}", concurrency, f"{per_s:.2f}",
                     f"{statistics.median(latencies) * 1000:.0f}", f"{q[18] * 1000:.0f}",
                     f"{mean_batch:.2f}", f"{per_s / baseline:.2f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="dinov2_vitb14")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="ViT-S/14 at 112, 16 requests")
    parser.add_argument("--dry-run", action="store_true", help="print, do not write the doc")
    args = parser.parse_args()
    if args.quick:
        args.model, args.size, args.requests = "dinov2_vits14", 112, 16
    with tempfile.TemporaryDirectory() as tmp:
        rows = run(args.model, args.size, args.requests, args.concurrency, Path(tmp))
    headers = ["micro-batching", "lone request ms", "clients", "images/s", "p50 ms", "p95 ms",
               "mean batch", "throughput vs off"]
    body = (f"{args.model}, random weights, {args.size}x{args.size} PNGs, {args.requests} "
            f"requests from {args.concurrency} concurrent clients over HTTP (raw body), "
            "engine threads: every core. "
            + ("Smoke run (small and noisy): not a measurement. " if args.quick else "")
            + "\n\n" + markdown_table(headers, rows))
    print(body)
    if not args.dry_run:
        write_section("embedding_service", "Embedding service: micro-batching", body)


if __name__ == "__main__":
    main()
