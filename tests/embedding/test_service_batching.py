"""The micro-batcher alone, with a recording stand-in for the model."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from numpy.typing import NDArray
from prometheus_client import CollectorRegistry

from services.common.errors import Overloaded
from services.embedding.batching import BatchMetrics, MicroBatcher
from services.embedding.engine import EmbedResult


class Recorder:
    """Returns each image's mean pixel value as its 'feature'; records every call."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[tuple[int, ...], bool]] = []
        self.means: list[bool] = []
        self.threads: set[str] = set()
        self.release = threading.Event()
        self.release.set()
        self.delay = delay

    def __call__(self, pixels: NDArray[np.float32], patch: bool, mean: bool) -> EmbedResult:
        self.release.wait(10)
        self.calls.append((pixels.shape, patch))
        self.means.append(mean)
        self.threads.add(threading.current_thread().name)
        value = pixels.reshape(len(pixels), -1).mean(axis=1, keepdims=True).astype(np.float32)
        feats = np.repeat(value, 4, axis=1)  # (B, 4)
        gh, gw = pixels.shape[2] // 14, pixels.shape[3] // 14
        tokens = np.repeat(feats[:, None, None, :], gh, axis=1).repeat(gw, axis=2) if patch \
            else None
        return EmbedResult(feats, feats if mean or patch else None, tokens)


def _img(value: float, h: int = 28, w: int = 28) -> NDArray[np.float32]:
    return np.full((3, h, w), value, dtype=np.float32)


def test_groups_by_shape_keeps_order_and_runs_off_the_loop() -> None:
    async def scenario() -> None:
        model = Recorder()
        batcher = MicroBatcher(model, max_batch=8, max_wait_s=0.05, queue_size=8,
                               metrics=BatchMetrics(CollectorRegistry()))
        batcher.start()
        first = [_img(1), _img(2, 28, 42), _img(3)]
        second = [_img(4, 28, 42), _img(5)]
        a, b = await asyncio.gather(batcher.submit(first), batcher.submit(second, True))
        await batcher.stop()
        assert [float(r.cls[0]) for r in a] == [1, 2, 3]
        assert [float(r.cls[0]) for r in b] == [4, 5]
        assert all(r.patch is None and r.mean_pooled is None for r in a)
        assert b[0].patch is not None and b[0].patch.shape == (2, 3, 4)
        assert b[0].mean_pooled is None  # not asked for, though computed for the batch
        # one call per shape, both requests in it
        assert sorted(shape for shape, _ in model.calls) == [(2, 3, 28, 42), (3, 3, 28, 28)]
        assert model.threads == {"embed_0"}
        assert model.means == [False, False]

    asyncio.run(scenario())


def test_max_batch_splits_calls() -> None:
    async def scenario() -> None:
        model = Recorder()
        batcher = MicroBatcher(model, max_batch=2, max_wait_s=0.0, queue_size=4)
        batcher.start()
        out = await batcher.submit([_img(v) for v in range(5)])
        await batcher.stop()
        assert [float(r.cls[0]) for r in out] == [0, 1, 2, 3, 4]
        assert [shape[0] for shape, _ in model.calls] == [2, 2, 1]

    asyncio.run(scenario())


def test_full_queue_is_refused_with_retry_after() -> None:
    async def scenario() -> None:
        model = Recorder()
        model.release.clear()  # the model blocks: requests pile up
        batcher = MicroBatcher(model, max_batch=1, max_wait_s=0.0, queue_size=1)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit([_img(1)]))
        await asyncio.sleep(0.05)  # taken by the batcher, now inside the model
        waiting = asyncio.ensure_future(batcher.submit([_img(2)]))
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded) as info:
            await batcher.submit([_img(3)])
        assert info.value.headers is not None
        assert int(info.value.headers["Retry-After"]) >= 1
        model.release.set()
        assert float((await running)[0].cls[0]) == 1
        assert float((await waiting)[0].cls[0]) == 2
        await batcher.stop()

    asyncio.run(scenario())


def test_mean_pooled_only_for_the_requests_that_ask() -> None:
    async def scenario() -> None:
        model = Recorder()
        batcher = MicroBatcher(model, max_batch=8, max_wait_s=0.05, queue_size=8)
        batcher.start()
        plain, pooled = await asyncio.gather(batcher.submit([_img(1)]),
                                             batcher.submit([_img(2)], mean_pooled=True))
        await batcher.stop()
        assert model.calls == [((2, 3, 28, 28), False)] and model.means == [True]
        assert plain[0].mean_pooled is None and plain[0].patch is None
        assert pooled[0].mean_pooled is not None and float(pooled[0].mean_pooled[0]) == 2
        assert pooled[0].patch is None

    asyncio.run(scenario())


def test_model_failure_fails_the_batch_and_the_batcher_goes_on() -> None:
    async def scenario() -> None:
        calls = 0

        def flaky(pixels: NDArray[np.float32], patch: bool, mean: bool) -> EmbedResult:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("boom")
            return Recorder()(pixels, patch, mean)

        batcher = MicroBatcher(flaky, max_batch=4, max_wait_s=0.0, queue_size=4)
        batcher.start()
        with pytest.raises(RuntimeError):
            await batcher.submit([_img(1)])
        assert float((await batcher.submit([_img(2)]))[0].cls[0]) == 2
        await batcher.stop()

    asyncio.run(scenario())
