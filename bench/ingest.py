"""Ingest at scale, end to end: `imgsearch ingest DIR` on N small generated images through the
whole stack (gateway, catalog, index, embedding, one worker), with the memory and CPU of every
process sampled over time; and the embedding client over 1 and 2 embedding replicas.

    python bench/ingest.py --count 100000          # the full run (hours on 2 busy cores)
    python bench/ingest.py --count 5000 --no-write # a smaller one
    python bench/ingest.py --replicas              # 1 vs 2 embedding replicas only

Scale run: images are 32x32 random-noise PNGs (distinct, about 3 KB each), embedded by
ViT-S/14 with random weights at a 28-pixel input (2x2 patches), so the pipeline, not the
model, sets the pace: the figures are the overhead of everything around the engine. It
reports the throughput, each process's resident memory at 10%, 50% and 100% of the run and
its maximum (growth = no leak per image), the CPU seconds each process used, and checks that
the catalog's indexed rows and the index's vectors are the same number at the end.

Replicas: N embedding processes on 127.0.0.2.. (one port, one name resolved to N addresses,
as Docker's DNS does for `--scale embedding=N`), each with cores/N BLAS threads, driven by
the workers' own client (`EmbeddingApi` over `ServiceClient`) from 2N threads sending
8-image requests of gallery images for a fixed time; images/s and the share of each replica.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._report import markdown_table, write_section  # noqa: E402
from tests.helpers.procs import ServiceProcess, free_port  # noqa: E402
from tests.helpers.redis_keys import drop_prefix  # noqa: E402
from tests.helpers.stack import Stack, start_stack  # noqa: E402

REPLICAS_NOTE = (
    "Both rows use the machine's 2 cores (2 BLAS threads in all). The client spreads evenly "
    "(the shares); the throughput gain is not from more cores; most likely, on a machine "
    "shared with other work, a two-thread replica waits at every matrix product for whichever "
    "of its threads was preempted, while two one-thread replicas never wait on each other. On "
    "an idle machine expect the two rows to be close; replicas add throughput when they run on "
    "more cores or more hosts.")
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def generate(folder: Path, count: int, size: int = 32, per_dir: int = 1000) -> None:
    """`count` distinct noise PNGs, `per_dir` to a folder, written as they are made."""
    from PIL import Image

    rng = np.random.default_rng(12345)
    for i in range(count):
        sub = folder / f"{i // per_dir:05d}"
        if i % per_dir == 0:
            sub.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="PNG", compress_level=1)
        (sub / f"{i:07d}.png").write_bytes(out.getvalue())


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _tree(pid: int, children: dict[int, list[int]]) -> list[int]:
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo += children.get(current, [])
    return out


def _usage(pid: int) -> tuple[float, float]:
    """(resident MB, CPU seconds) of one process; zeros when it is gone."""
    try:
        rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0
    cpu = (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime
    return rss_pages * PAGE / 2**20, cpu


@dataclass
class Sample:
    t: float
    indexed: int
    rss: dict[str, float]
    cpu: dict[str, float]


@dataclass
class Sampler:
    """Every `every_s`: RSS and CPU of each named process tree, and the indexed count."""

    roots: dict[str, int]
    indexed: object  # () -> int
    every_s: float
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            self.samples.append(self.take(time.monotonic() - start))
            self._stop.wait(self.every_s)

    def take(self, t: float) -> Sample:
        children = _children()
        rss, cpu = {}, {}
        for name, pid in self.roots.items():
            usage = [_usage(p) for p in _tree(pid, children)]
            rss[name] = sum(u[0] for u in usage)
            cpu[name] = sum(u[1] for u in usage)
        try:
            indexed = int(self.indexed())  # type: ignore[operator]
        except (httpx.HTTPError, KeyError, ValueError):
            indexed = self.samples[-1].indexed if self.samples else 0
        return Sample(t, indexed, rss, cpu)

    @contextmanager
    def running(self) -> Iterator[Sampler]:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()


def internal_json(stack: Stack, name: str, path: str) -> dict[str, object]:
    with stack.internal(name) as client:
        response = client.get(path)
        response.raise_for_status()
        body: dict[str, object] = response.json()
        return body


def catalog_requests(stack: Stack) -> dict[str, float]:
    """Requests the catalog answered so far, per method and route (its /metrics)."""
    with stack.internal("catalog") as client:
        response = client.get("/metrics")
        response.raise_for_status()
    counts: dict[str, float] = {}
    for line in response.text.splitlines():
        if not line.startswith("http_requests_total{"):
            continue
        labels, value = line.rsplit(" ", 1)
        method = re.search(r'method="([^"]*)"', labels)
        route = re.search(r'route="([^"]*)"', labels)
        if method and route:
            key = f"{method[1]} {route[1]}"
            counts[key] = counts.get(key, 0.0) + float(value)
    return counts


def at_fraction(samples: list[Sample], total: int, fraction: float) -> Sample:
    for sample in samples:
        if sample.indexed >= fraction * total:
            return sample
    return samples[-1]


def scale_run(args: argparse.Namespace) -> str:
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp_name:
        tmp = Path(tmp_name)
        folder = tmp / "images"
        began = time.perf_counter()
        generate(folder, args.count)
        print(f"generated {args.count} images in {time.perf_counter() - began:.0f}s", flush=True)
        extra = {"IMGSEARCH_EMBEDDING_IMAGE_SIZE": str(args.image_size)}
        kwargs: dict[str, object] = {"model": args.model, "extra_env": extra}
        prefix = f"bench-ingest-{uuid.uuid4().hex[:8]}:"
        if args.redis:
            kwargs.update(redis_url=args.redis, redis_prefix=prefix)
        if args.mysql:
            kwargs["database_url"] = args.mysql
        stack = start_stack(tmp, **kwargs)  # type: ignore[arg-type]
        try:
            return _measure(stack, folder, tmp, args)
        finally:
            stack.stop()
            if args.redis:  # the broker's keys of this run
                drop_prefix(args.redis, prefix)


def _measure(stack: Stack, folder: Path, tmp: Path, args: argparse.Namespace) -> str:
    env = {**os.environ, "IMGSEARCH_PASSWORD": stack.admin_password,
           "IMGSEARCH_DATA_DIR": str(tmp / "cli-data")}
    roots = {name: proc.proc.pid for name, proc in stack.processes.items()
             if proc.proc is not None}
    if stack.worker is not None and stack.worker.proc is not None:
        roots["worker"] = stack.worker.proc.pid

    def indexed() -> int:
        stats = internal_json(stack, "catalog", "/v1/stats")
        images = stats["images"]
        assert isinstance(images, dict)
        return int(images.get("indexed", 0))

    sampler = Sampler(roots, indexed, args.sample_s)
    loads = [os.getloadavg()[0]]
    start = time.perf_counter()
    with sampler.running():
        cli = subprocess.Popen(
            [sys.executable, "-m", "imgsearch.cli", "ingest", str(folder), "--quiet",
             "--url", stack.url, "--username", stack.admin_username],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        roots["cli"] = cli.pid
        output, _ = cli.communicate()
        elapsed = time.perf_counter() - start
    loads.append(os.getloadavg()[0])
    requests = catalog_requests(stack)
    catalog = internal_json(stack, "catalog", "/v1/stats")
    index = internal_json(stack, "index", "/v1/stats")
    images = catalog["images"]
    assert isinstance(images, dict)
    n_indexed, n_vectors = int(images.get("indexed", 0)), int(index["count"])  # type: ignore[call-overload]
    print(output, flush=True)
    samples = sampler.samples
    names = list(roots)
    rows: list[list[object]] = []
    early = at_fraction(samples, args.count, 0.1)
    middle = at_fraction(samples, args.count, 0.5)
    last = samples[-1]
    for name in names:
        peak = max(s.rss.get(name, 0.0) for s in samples)
        grow = last.rss.get(name, 0.0) - early.rss.get(name, 0.0)
        rows.append([name, f"{early.rss.get(name, 0):.0f}", f"{middle.rss.get(name, 0):.0f}",
                     f"{last.rss.get(name, 0):.0f}", f"{peak:.0f}", f"{grow:+.0f}",
                     f"{last.cpu.get(name, 0):.0f}"])
    cpu_total = sum(last.cpu.get(n, 0.0) for n in names)
    embedding_share = last.cpu.get("embedding", 0.0) / max(cpu_total, 1e-9)
    outside_ms = (cpu_total - last.cpu.get("embedding", 0.0)) / args.count * 1000
    request_rows: list[list[object]] = [
        [f"`{route}`", f"{n:.0f}", f"{n / args.count:.3f}"]
        for route, n in sorted(requests.items(), key=lambda kv: -kv[1])]
    request_rows.append(["all", f"{sum(requests.values()):.0f}",
                         f"{sum(requests.values()) / args.count:.3f}"])
    series = [s for s in samples[:: max(1, len(samples) // 10)]] + [last]
    trend = markdown_table(["t (s)", "indexed", *[f"{n} MB" for n in names]],
                           [[f"{s.t:.0f}", s.indexed, *[f"{s.rss.get(n, 0):.0f}" for n in names]]
                            for s in series])
    broker = "Redis broker" if args.redis else "embedded broker"
    catalog_kind = "MariaDB catalog" if args.mysql else "SQLite catalog"
    ok = "equal" if n_indexed == n_vectors == args.count else "NOT equal"
    body = (
        f"{args.count} generated 32x32 PNGs through `imgsearch ingest` (batches of 16, one "
        f"gateway), {catalog_kind}, {broker}, one worker (concurrency 2, 8 "
        f"images per ingest task), {args.model} (random weights) at a {args.image_size}-pixel "
        f"input, all on this machine. Wall time {elapsed:.0f} s: **{args.count / elapsed:.1f} "
        f"images/s** end to end. At the end the catalog has {n_indexed} indexed rows and the "
        f"index {n_vectors} vectors ({ok} to the {args.count} files). The embedding service's "
        f"share of the stack's CPU time: {embedding_share:.0%}; "
        f"CPU per image outside the embedding service: {outside_ms:.0f} ms. "
        f"The index keeps its vectors in RAM: {n_vectors} x {index.get('dim')} float32 are "
        f"{n_vectors * int(index.get('dim') or 0) * 4 / 2**20:.0f} MB, its expected growth.\n\n"
        "Resident memory (MB) of each process tree at 10%, 50% and 100% of the images "
        "indexed, its maximum, the growth from 10% to the end, and the CPU seconds it used "
        "(the worker includes its pool processes):\n\n"
        + markdown_table(["process", "RSS 10%", "RSS 50%", "RSS end", "RSS max",
                          "growth 10%->end", "CPU s"], rows)
        + "\n\nRequests the catalog answered during the run, per image (the sampler's "
        "`GET /v1/stats` is the benchmark's own):\n\n"
        + markdown_table(["route", "requests", "per image"], request_rows)
        + "\n\nOver time:\n\n" + trend
        + f"\n\nLoad average (1 min): {loads[0]:.1f} at the start, {loads[1]:.1f} at the end, "
        f"on {os.cpu_count()} cores (other work shared the machine when it is above that).")
    if args.label:
        body += f"\n\n{args.label}"
    return body


def gallery_images(count: int) -> list[bytes]:
    from gallery.generate import generate as draw

    with tempfile.TemporaryDirectory() as tmp:
        paths = draw(Path(tmp), per_family=-(-count // 6))[:count]
        return [p.read_bytes() for p in paths]


def metric(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def replica_run(n: int, images: list[bytes], args: argparse.Namespace, tmp: Path,
                ) -> tuple[float, list[float]]:
    """Images/s over `n` replicas and each replica's share of the images."""
    from services.common.http import ServiceClient
    from services.workers.clients import EmbeddingApi

    token = secrets.token_urlsafe(24)
    threads = max(1, (os.cpu_count() or 2) // n)
    env = {"IMGSEARCH_DATA_DIR": str(tmp / "data"), "IMGSEARCH_INTERNAL_TOKEN": token,
           "IMGSEARCH_LOG_FORMAT": "text", "IMGSEARCH_RANDOM_WEIGHTS": "1",
           "IMGSEARCH_EMBEDDING_MODEL": args.replica_model,
           "IMGSEARCH_EMBEDDING_THREADS": str(threads)}
    port = free_port()
    procs = [ServiceProcess("embedding", env, tmp, port=port, host=f"127.0.0.{2 + i}")
             for i in range(n)]
    try:
        for proc in procs:
            proc.start(300)
        client = ServiceClient("embedding", f"http://embedding.bench:{port}", token,
                               resolver=lambda host, p: [proc.host for proc in procs],
                               timeout=600)
        api = EmbeddingApi(client)
        batches = [images[i:i + 8] for i in range(0, len(images), 8)]
        api.embed(batches[0])  # warm every replica a little
        for proc in procs[1:]:
            httpx.post(proc.url + "/v1/embed", headers={"X-Internal-Token": token},
                       files=[("file", ("a", images[0]))], timeout=600)
        before = [metric(p.url, "embedding_images_total") for p in procs]
        done = 0
        lock = threading.Lock()
        deadline = time.monotonic() + args.replica_seconds

        def drive(k: int) -> None:
            nonlocal done
            i = k
            while time.monotonic() < deadline:
                api.embed(batches[i % len(batches)])
                with lock:
                    done += len(batches[i % len(batches)])
                i += 2 * n

        start = time.perf_counter()
        with ThreadPoolExecutor(2 * n) as pool:
            list(pool.map(drive, range(2 * n)))
        rate = done / (time.perf_counter() - start)
        after = [metric(p.url, "embedding_images_total") for p in procs]
        client.close()
        counts = [a - b for a, b in zip(after, before, strict=True)]
        return rate, [c / max(sum(counts), 1) for c in counts]
    finally:
        for proc in procs:
            proc.stop()


def replicas(args: argparse.Namespace) -> str:
    images = gallery_images(48)
    rows: list[list[object]] = []
    rates: dict[int, list[float]] = {1: [], 2: []}
    shares: dict[int, list[float]] = {}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp_name:
        for _ in range(args.replica_rounds):  # alternate, so both see the same load
            for n in (1, 2):
                rate, share = replica_run(n, images, args, Path(tmp_name))
                rates[n].append(rate)
                shares[n] = share
                print(f"{n} replica(s): {rate:.2f} images/s, shares {share}", flush=True)
    loads.append(os.getloadavg()[0])
    base = statistics.median(rates[1])
    for n in (1, 2):
        rows.append([n, max(1, (os.cpu_count() or 2) // n), 2 * n,
                     f"{statistics.median(rates[n]):.2f}",
                     f"{statistics.median(rates[n]) / base:.2f}x",
                     " / ".join(f"{s:.0%}" for s in shares[n])])
    body = (f"{args.replica_model} (random weights), gallery images (384x288, 224x294 model "
            f"input), 8 images per request, {args.replica_seconds:.0f} s per measure, "
            f"{args.replica_rounds} alternating rounds (median). Replicas on 127.0.0.2.. "
            "behind one name that resolves to all of them; the client is the workers' own.\n\n"
            + markdown_table(["replicas", "BLAS threads each", "client threads", "images/s",
                              "vs 1 replica", "share of each replica"], rows)
            + "\n\n" + REPLICAS_NOTE
            + f"\n\nLoad average (1 min): {loads[0]:.1f} at the start, {loads[1]:.1f} at the "
            f"end, on {os.cpu_count()} cores (other work shared the machine when it is above "
            "that).")
    if args.label:
        body += f"\n\n{args.label}"
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description="ingest at scale; embedding replicas")
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--model", default="dinov2_vits14")
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--redis", default="", help="Redis URL: the broker (default embedded)")
    parser.add_argument("--mysql", default="", help="SQLAlchemy URL of a catalog database")
    parser.add_argument("--tmp", default=None, help="where the images are generated")
    parser.add_argument("--replicas", action="store_true", help="only the replicas measure")
    parser.add_argument("--no-replicas", action="store_true", help="skip the replicas measure")
    parser.add_argument("--replica-model", default="dinov2_vits14")
    parser.add_argument("--replica-seconds", type=float, default=30.0)
    parser.add_argument("--replica-rounds", type=int, default=2)
    parser.add_argument("--label", default="", help="a note printed under the tables")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if not args.replicas:
        body = scale_run(args)
        print(body, flush=True)
        if not args.no_write:
            write_section("ingest-scale", "Ingest at scale, end to end", body)
    if not args.no_replicas:
        body = replicas(args)
        print(body, flush=True)
        if not args.no_write:
            write_section("embedding-replicas", "Embedding replicas", body)


if __name__ == "__main__":
    main()
