"""The task functions (plain functions of a `TaskContext`) and their registration on a Celery
app under the names of `services.common.queue`, with the retry policy around them."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded

from services.common import queue
from services.common.errors import DomainError
from services.common.http import TransientUpstream
from services.common.settings import common_settings
from services.workers.clients import process_clients
from services.workers.config import WorkersSettings
from services.workers.tasks.bulk import bulk_ingest
from services.workers.tasks.context import TaskContext
from services.workers.tasks.ingest import ingest
from services.workers.tasks.reconcile import reconcile
from services.workers.tasks.reindex import reindex
from services.workers.tasks.removal import delete

logger = logging.getLogger(__name__)

TASKS: dict[str, Callable[..., Any]] = {
    queue.INGEST: ingest,
    queue.DELETE: delete,
    queue.BULK_INGEST: bulk_ingest,
    queue.REINDEX: reindex,
    queue.RECONCILE: reconcile,
}
LONG_TASKS = frozenset({queue.BULK_INGEST, queue.REINDEX, queue.RECONCILE})
# Tasks of one image: while one runs it holds the image's lease (see TaskContext).
IMAGE_TASKS = frozenset({queue.INGEST, queue.DELETE})


def is_transient(exc: BaseException) -> bool:
    """Worth retrying later: a service down or slow, the broker or Redis away, a 5xx."""
    if isinstance(exc, TransientUpstream | queue.QueueUnavailable | SoftTimeLimitExceeded |
                  ConnectionError | TimeoutError):
        return True
    if isinstance(exc, DomainError):
        return exc.status >= 500
    module = type(exc).__module__
    # redis-py and kombu connection errors, without importing either here
    return module.startswith(("redis.", "kombu.")) and "Error" in type(exc).__name__


def backoff_s(retries: int, cap: float) -> float:
    """Exponential backoff with jitter: about 1, 2, 4, ... seconds, at most `cap`."""
    ceiling = min(cap, 2.0 ** retries)
    return random.uniform(ceiling / 2, ceiling)


def task_context(app: Celery, settings: WorkersSettings) -> TaskContext:
    def enqueue(name: str, kwargs: dict[str, Any]) -> None:
        queue.send_task(name, kwargs, producer=app)

    return TaskContext(settings=settings, clients=process_clients(settings),
                       data_dir=common_settings().data_dir, enqueue=enqueue,
                       queue_depth=lambda: queue.queue_depth(app))


@contextmanager
def signs_of_life(ctx: TaskContext, image_id: int | None, job_id: int | None
                  ) -> Iterator[None]:
    """While the body runs, hold the image's lease and keep the job's heartbeat fresh,
    renewed every third of `image_lease_s` by a thread; a kill -9 stops the renewals, the
    lease lapses and the heartbeat ages, and reconcile re-drives the work."""
    seconds = ctx.settings.image_lease_s
    stop = threading.Event()

    def mark() -> None:
        if image_id is not None:
            ctx.lease_image(image_id, seconds)
        if job_id is not None:
            ctx.heartbeat(job_id)

    def renew() -> None:
        while not stop.wait(seconds / 3):
            try:
                mark()
            except OSError as exc:
                logger.warning("task of image %s / job %s: lease not renewed: %s", image_id,
                               job_id, exc)

    mark()
    renewer = threading.Thread(target=renew, name="signs-of-life", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()


def register_tasks(app: Celery, settings: Callable[[], WorkersSettings]) -> None:
    """Bind every task function to `app`; `settings` is read when a task runs."""
    for name, fn in TASKS.items():
        _register(app, name, fn, settings)


def _register(app: Celery, name: str, fn: Callable[..., Any],
              settings: Callable[[], WorkersSettings]) -> None:
    def run(self: Task, **kwargs: Any) -> Any:
        current = settings()
        ctx = task_context(self.app, current)
        image_id = kwargs.get("image_id") if name in IMAGE_TASKS else None
        job_id = kwargs.get("job_id") if name != queue.RECONCILE else None
        try:
            if image_id is None and job_id is None:
                return fn(ctx, **kwargs)
            with signs_of_life(ctx, None if image_id is None else int(image_id),
                               None if job_id is None else int(job_id)):
                result = fn(ctx, **kwargs)
            if image_id is not None:
                ctx.release_image(int(image_id))
            return result
        except Exception as exc:
            if not is_transient(exc):
                logger.exception("task %s %s failed permanently", name, kwargs)
                raise
            if self.request.retries >= current.max_retries:
                # The catalog keeps the row pending (or deleting): reconcile picks it up later.
                logger.error("task %s %s gave up after %d retries: %s", name, kwargs,
                             self.request.retries, exc)
                raise
            countdown = backoff_s(self.request.retries, current.retry_backoff_max_s)
            if image_id is not None:
                # The retry is this task still: hold the image until it is due, and then some.
                ctx.lease_image(int(image_id), countdown + current.image_lease_s)
            logger.warning("task %s %s: transient error, retry %d in %.1fs: %s", name, kwargs,
                           self.request.retries + 1, countdown, exc)
            raise self.retry(exc=exc, countdown=countdown,
                             max_retries=current.max_retries) from exc

    run.__name__ = name.rsplit(".", 1)[-1]
    run.__qualname__ = run.__name__
    run.__doc__ = fn.__doc__
    app.task(name=name, bind=True, acks_late=True, reject_on_worker_lost=True)(run)
