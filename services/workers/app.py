"""The Celery app of the workers.

`create_celery()` builds the app; its configuration (broker, queues, limits, beat schedule) is
computed from settings only when first needed, so importing this module reads no settings,
opens no connection and creates no file. The module-level `app` exists because
`celery -A services.workers.app worker` needs an attribute to load; `imgsearch worker` uses the
same object.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from celery import Celery, signals

from services.common import queue
from services.common.logging import rotating_file_handler
from services.common.permissions import private_files
from services.common.settings import common_settings
from services.workers.config import WorkersSettings
from services.workers.tasks import LONG_TASKS, register_tasks


def worker_config(settings: WorkersSettings) -> dict[str, Any]:
    """The full Celery configuration of a worker (the producer's plus the worker's keys)."""
    common = common_settings()
    config = queue.celery_config(settings, common)
    long_limits = {"soft_time_limit": settings.long_task_time_limit_s,
                   "time_limit": settings.long_task_time_limit_s + 60}
    config.update({
        # A message is acknowledged after its task ran, and a task whose worker process died
        # is requeued: a kill -9 loses nothing (tasks are idempotent, so a rerun is harmless).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": settings.concurrency,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "broker_connection_retry": True,
        "broker_connection_max_retries": None,
        "task_soft_time_limit": settings.task_soft_time_limit_s,
        "task_time_limit": settings.task_time_limit_s,
        "task_annotations": {name: long_limits for name in LONG_TASKS},
        "worker_send_task_events": False,
        "beat_schedule": {
            # The light pass: stuck rows and jobs re-driven within a minute of a kill.
            "recover": {
                "task": queue.RECONCILE,
                "schedule": settings.recover_every_s,
                "kwargs": {"full": False},
                "options": {"queue": settings.queue, "expires": settings.recover_every_s},
            },
            "reconcile": {
                "task": queue.RECONCILE,
                "schedule": settings.reconcile_every_s,
                "options": {"queue": settings.queue, "expires": settings.reconcile_every_s},
            },
        },
        "beat_schedule_filename": str(common.data_dir / "celerybeat-schedule"),
    })
    return config


class WorkerCelery(Celery):
    """A Celery app that carries its WorkersSettings (read on first use)."""

    _settings: WorkersSettings | None = None

    @property
    def settings(self) -> WorkersSettings:
        if self._settings is None:
            self._settings = WorkersSettings()
        return self._settings


def create_celery(settings: WorkersSettings | None = None) -> WorkerCelery:
    """The workers' Celery app with every task registered; configuration read lazily."""
    app = WorkerCelery("imgsearch", set_as_current=False)
    app._settings = settings

    @lru_cache(maxsize=1)
    def config() -> dict[str, Any]:
        private_files()
        common_settings().data_dir.mkdir(parents=True, exist_ok=True)
        private_files(common_settings().data_dir)
        return worker_config(app.settings)

    app.add_defaults(config)
    register_tasks(app, lambda: app.settings)
    signals.after_setup_logger.connect(_log_to_file, weak=False)
    return app


def _log_to_file(logger: Any, **_: Any) -> None:
    """With `log_file` set, the worker's log goes to that file instead of the terminal,
    rotated (Celery's own --logfile never rotates), as the services' logs do."""
    common = common_settings()
    if common.log_path is not None:
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.addHandler(rotating_file_handler(common.log_path, fmt=common.log_format,
                                               max_bytes=common.log_max_bytes,
                                               backups=common.log_backups))


app = create_celery()
