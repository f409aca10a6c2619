"""Dynamic micro-batching: concurrent requests share one model call.

Requests wait in a bounded asyncio queue (a full queue is refused at once: 503 `overloaded`
with `Retry-After`). One batcher task takes the first waiting request, then collects more
until `max_batch` images are gathered or `max_wait_s` has passed, groups the images by tensor
shape (resize_short_side gives varied sizes; only equal shapes stack), and runs the model in a
dedicated worker thread, never on the event loop. Each request's future gets its own rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.errors import DomainError, Overloaded
from services.embedding.engine.model import EmbedResult

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ItemResult:
    """One image's features: cls (D,), mean_pooled (D,) or None, patch (gh, gw, D) or None."""

    cls: NDArray[np.float32]
    mean_pooled: NDArray[np.float32] | None
    patch: NDArray[np.float32] | None


# (B, 3, H, W) float32 pixels, patch tokens wanted, mean-pooled patches wanted -> features
EmbedFn = Callable[[NDArray[np.float32], bool, bool], EmbedResult]


@dataclass
class _Job:
    pixels: list[NDArray[np.float32]]  # each (3, H, W)
    patch_tokens: bool
    mean_pooled: bool
    future: asyncio.Future[list[ItemResult]]
    enqueued: float = field(default_factory=time.perf_counter)


class BatchMetrics:
    """Prometheus metrics of the batcher, registered in the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.batch_size = Histogram(
            "embedding_batch_size", "Images per model call",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64), registry=registry)
        self.queue_depth = Gauge(
            "embedding_queue_depth", "Requests waiting for the model", registry=registry)
        self.inference_seconds = Histogram(
            "embedding_inference_seconds", "Time of one model call",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=registry)
        self.queue_wait_seconds = Histogram(
            "embedding_queue_wait_seconds", "Time a request waited before its model call",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry)
        self.images = Counter("embedding_images", "Images embedded", registry=registry)
        self.rejected = Counter("embedding_rejected", "Requests refused because the queue was full",
                                registry=registry)


class MicroBatcher:
    """Collects concurrent embedding requests into batched model calls."""

    def __init__(self, embed: EmbedFn, *, max_batch: int, max_wait_s: float, queue_size: int,
                 metrics: BatchMetrics | None = None) -> None:
        self._embed = embed
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=queue_size)
        self._metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        self._task: asyncio.Task[None] | None = None
        self._call_seconds = 0.0  # running mean of one model call, for Retry-After

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        """Stop the batcher; requests still waiting are answered 503."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(Overloaded("the embedding service is shutting down"))
        self._executor.shutdown(wait=True)

    def retry_after(self) -> int:
        """Seconds a refused client should wait: the queue's expected drain time, at least 1."""
        calls = self._queue.qsize() / self.max_batch + 1
        return max(1, math.ceil(calls * self._call_seconds))

    async def submit(self, pixels: list[NDArray[np.float32]], patch_tokens: bool = False,
                     mean_pooled: bool = False) -> list[ItemResult]:
        """Features of `pixels` (each (3, H, W) float32), in order; `Overloaded` when full.
        The CLS features always; patch tokens and mean-pooled patches when asked for (a
        batch shared with a request that asks computes them for all, and hands each request
        only what it asked for)."""
        if not self.running:
            raise Overloaded("the embedding model is not running")
        future: asyncio.Future[list[ItemResult]] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Job(pixels, patch_tokens, mean_pooled, future))
        except asyncio.QueueFull:
            if self._metrics is not None:
                self._metrics.rejected.inc()
            wait = self.retry_after()
            raise Overloaded(
                "the embedding queue is full; retry later",
                detail={"queue_size": self._queue.maxsize, "retry_after_s": wait},
                headers={"Retry-After": str(wait)},
            ) from None
        self._observe_depth()
        return await future

    def _observe_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.set(self._queue.qsize())

    async def _collect(self) -> list[_Job]:
        """The next batch of jobs: the first waiting one, and more until full or timed out."""
        jobs = [await self._queue.get()]
        count = len(jobs[0].pixels)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while count < self.max_batch:
            if self._queue.empty():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            else:
                job = self._queue.get_nowait()
            jobs.append(job)
            count += len(job.pixels)
        self._observe_depth()
        return [job for job in jobs if not job.future.done()]  # skip abandoned requests

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect()
            if not jobs:
                continue
            now = time.perf_counter()
            if self._metrics is not None:
                for job in jobs:
                    self._metrics.queue_wait_seconds.observe(now - job.enqueued)
            try:
                results = await loop.run_in_executor(self._executor, self._infer, jobs)
            except Exception as exc:
                if not isinstance(exc, DomainError):
                    logger.exception("model call failed for %d requests", len(jobs))
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            for job, result in zip(jobs, results, strict=True):
                if not job.future.done():
                    job.future.set_result(result)

    def _infer(self, jobs: list[_Job]) -> list[list[ItemResult]]:
        """Runs in the worker thread: group by shape, call the model per chunk of max_batch."""
        groups: dict[tuple[int, ...], list[tuple[int, int]]] = {}
        for j, job in enumerate(jobs):
            for i, pixels in enumerate(job.pixels):
                groups.setdefault(pixels.shape, []).append((j, i))
        out: list[list[ItemResult | None]] = [[None] * len(job.pixels) for job in jobs]
        for members in groups.values():
            for start in range(0, len(members), self.max_batch):
                chunk = members[start:start + self.max_batch]
                want_patch = any(jobs[j].patch_tokens for j, _ in chunk)
                want_mean = any(jobs[j].mean_pooled for j, _ in chunk)
                batch = np.stack([jobs[j].pixels[i] for j, i in chunk])  # (B, 3, H, W)
                began = time.perf_counter()
                result = self._embed(batch, want_patch, want_mean)
                spent = time.perf_counter() - began
                self._call_seconds = spent if not self._call_seconds else (
                    0.8 * self._call_seconds + 0.2 * spent)
                if self._metrics is not None:
                    self._metrics.batch_size.observe(len(chunk))
                    self._metrics.inference_seconds.observe(spent)
                    self._metrics.images.inc(len(chunk))
                for row, (j, i) in enumerate(chunk):
                    patch = mean = None
                    if jobs[j].patch_tokens and result.patch is not None:
                        patch = result.patch[row]
                    if jobs[j].mean_pooled and result.mean_pooled is not None:
                        mean = result.mean_pooled[row]
                    out[j][i] = ItemResult(result.cls[row], mean, patch)
        return [[item for item in items if item is not None] for items in out]
