"""The work queue, as both sides see it: task names, the broker URL, the producer.

The gateway enqueues tasks by name through `send_task` and never imports `services.workers`;
the workers build their Celery app from the same `celery_config`, so producer and consumer
agree on the broker, the queue, the key prefix and the serializer.

Broker: `workers.broker_url` (Redis in production, `redis://host:6379/0`); empty means the
embedded broker, kombu's SQLAlchemy transport on `$IMGSEARCH_DATA_DIR/broker.sqlite`
(`services.common.sqlbroker`, which polls every `polling_interval_s`), which needs no server
(see docs/workers.md for what it does and does not guarantee).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pydantic import Field

from services.common.settings import CommonSettings, SectionSettings, common_settings

logger = logging.getLogger(__name__)

INGEST = "imgsearch.ingest"
DELETE = "imgsearch.delete"
BULK_INGEST = "imgsearch.bulk_ingest"
REINDEX = "imgsearch.reindex"
RECONCILE = "imgsearch.reconcile"

TASK_NAMES = frozenset({INGEST, DELETE, BULK_INGEST, REINDEX, RECONCILE})


class QueueSettings(SectionSettings, section="workers"):
    """The keys of the `workers:` section both the producer and the workers need."""

    broker_url: str = ""
    result_backend: str = ""
    # Prefix of every Redis key the broker writes, so several installs (or test runs) can
    # share one Redis without seeing each other's queues.
    redis_key_prefix: str = "imgsearch:"
    queue: str = "imgsearch"
    # Redis only: a task taken by a worker that dies is redelivered after this long.
    visibility_timeout_s: int = Field(default=3600, ge=1)
    # Publishing retries while the broker is unreachable (the caller sees an error after them).
    publish_retries: int = Field(default=3, ge=0)
    # Embedded broker only: how often an idle worker looks for a new message (kombu's default
    # of 1 s would add half a second on average to every upload).
    polling_interval_s: float = Field(default=0.05, gt=0, le=10)
    # Images per ingest task: a worker embeds them in one request, so the embedding service's
    # micro-batcher runs full batches (keep it at the service's `max_batch`).
    ingest_batch: int = Field(default=8, ge=1, le=64)


EMBEDDED_TRANSPORT = "services.common.sqlbroker:Transport"


class QueueUnavailable(Exception):
    """The broker did not accept the message after the publish retries."""


def broker_url(settings: QueueSettings, common: CommonSettings | None = None) -> str:
    """`settings.broker_url`, or the embedded SQLite broker under the data directory."""
    if settings.broker_url:
        return settings.broker_url
    data_dir = (common or common_settings()).data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{data_dir / 'broker.sqlite'}"


def is_embedded(url: str) -> bool:
    """The embedded broker's URL (a SQLite file, served by `services.common.sqlbroker`)."""
    return url.startswith("sqlite:")


def is_redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://", "redis+socket://"))


def transport_options(settings: QueueSettings, url: str) -> dict[str, Any]:
    """Broker transport options: Redis key prefix and visibility timeout; for SQLite, the
    polling interval."""
    if is_redis(url):
        return {
            "global_keyprefix": settings.redis_key_prefix,
            "visibility_timeout": settings.visibility_timeout_s,
            # Look for the unacknowledged messages of dead workers often enough that a short
            # visibility timeout is honoured (the default scan runs about every 100 s).
            "unacked_restore_interval": min(10, settings.visibility_timeout_s),
            "unacked_restore_throttle": 1,
        }
    if is_embedded(url):
        return {"polling_interval": settings.polling_interval_s}
    return {}


def celery_config(settings: QueueSettings, common: CommonSettings | None = None) -> dict[str, Any]:
    """The Celery configuration both the producer and the workers use."""
    url = broker_url(settings, common)
    options = transport_options(settings, url)
    config: dict[str, Any] = {
        "broker_url": url,
        "broker_transport_options": options,
        **({"broker_transport": EMBEDDED_TRANSPORT} if is_embedded(url) else {}),
        "broker_connection_retry_on_startup": True,
        "task_default_queue": settings.queue,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_ignore_result": not settings.result_backend,
        "enable_utc": True,
        "task_publish_retry": True,
        "task_publish_retry_policy": {
            "max_retries": settings.publish_retries,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 2.0,
        },
    }
    if settings.result_backend:
        config["result_backend"] = settings.result_backend
        if is_redis(settings.result_backend):
            config["result_backend_transport_options"] = {
                "global_keyprefix": settings.redis_key_prefix}
    return config


def make_producer(settings: QueueSettings | None = None,
                  common: CommonSettings | None = None) -> Any:
    """A Celery app that only sends tasks (no task modules imported): the gateway's handle."""
    from celery import Celery

    settings = settings or QueueSettings()
    app = Celery("imgsearch-producer", set_as_current=False)
    app.conf.update(celery_config(settings, common))
    app.conf.imgsearch_ingest_batch = settings.ingest_batch
    return app


def ingest_messages(image_ids: list[int], *, job_id: int | None, on_near_duplicate: str,
                    batch: int) -> list[dict[str, Any]]:
    """The kwargs of the ingest tasks for `image_ids`: `batch` images per task, in order."""
    return [{"image_ids": image_ids[start:start + batch], "job_id": job_id,
             "on_near_duplicate": on_near_duplicate}
            for start in range(0, len(image_ids), batch)]


_default_producer: Any = None
_default_lock = threading.Lock()


def _producer() -> Any:
    global _default_producer
    with _default_lock:
        if _default_producer is None:
            _default_producer = make_producer()
        return _default_producer


def send_task(name: str, kwargs: dict[str, Any], *, producer: Any = None,
              countdown: float | None = None) -> str:
    """Enqueue task `name` with JSON `kwargs`; returns the task id. Blocking (a few ms):
    call it from async code through a thread (`starlette.concurrency.run_in_threadpool`).

    `producer` is an app from `make_producer`; without one, a process-wide producer is built
    from settings on first use. Raises `QueueUnavailable` when the broker refuses.
    """
    if name not in TASK_NAMES:
        raise ValueError(f"unknown task {name!r}; expected one of {sorted(TASK_NAMES)}")
    app = producer if producer is not None else _producer()
    try:
        result = app.send_task(name, kwargs=kwargs, countdown=countdown,
                               queue=app.conf.task_default_queue)
    except Exception as exc:  # kombu raises a family of connection errors; callers see one
        logger.warning("enqueue of %s failed: %s", name, exc)
        raise QueueUnavailable(f"the task queue is unavailable: {exc}") from exc
    task_id: str = result.id
    return task_id


def queue_depth(app: Any) -> int | None:
    """Messages waiting in the app's default queue (taken ones not counted); None when the
    broker cannot say."""
    try:
        with app.connection_for_write() as conn:
            declared = conn.default_channel.queue_declare(
                queue=app.conf.task_default_queue, passive=True)
            return int(declared.message_count)
    except Exception as exc:  # an unknown depth only makes recovery more cautious
        logger.warning("queue depth unknown: %s", exc)
        return None


def purge_consumed(url: str) -> int:
    """The embedded SQLite broker keeps every message it delivered (kombu marks it invisible
    and never deletes it): delete those, so broker.sqlite does not grow without end. Returns
    the number deleted; 0 for any other broker."""
    if not url.startswith("sqla+sqlite:"):
        return 0
    import sqlalchemy as sa

    engine = sa.create_engine(url.removeprefix("sqla+"))
    try:
        with engine.begin() as conn:
            if not sa.inspect(conn).has_table("kombu_message"):
                return 0
            result = conn.execute(sa.text("DELETE FROM kombu_message WHERE visible = 0"))
            return int(result.rowcount or 0)
    finally:
        engine.dispose()
