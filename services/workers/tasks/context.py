"""What a task needs from its process: settings, service clients, folders, a way to enqueue.

Celery tasks build one per call from the process's settings; unit tests build one with fake
clients and a list that records what was enqueued.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.settings import images_dir_of, thumbs_dir_of
from services.workers.clients import Clients
from services.workers.config import WorkersSettings

logger = logging.getLogger(__name__)

Enqueue = Callable[[str, dict[str, Any]], None]


def _unknown_depth() -> int | None:
    return None


@dataclass
class TaskContext:
    settings: WorkersSettings
    clients: Clients
    data_dir: Path
    enqueue: Enqueue
    # Messages waiting in the work queue (not yet taken by a worker); None when unknown.
    queue_depth: Callable[[], int | None] = field(default=_unknown_depth)

    @property
    def images_dir(self) -> Path:
        return images_dir_of(self.data_dir)

    @property
    def thumbs_dir(self) -> Path:
        return thumbs_dir_of(self.data_dir)

    @property
    def heartbeat_dir(self) -> Path:
        return self.data_dir / "jobs"

    def heartbeat(self, job_id: int) -> None:
        """Mark job `job_id` as worked on now (reconcile re-drives jobs whose mark is old)."""
        path = self.heartbeat_dir / f"{int(job_id)}.alive"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()

    def heartbeat_age(self, job_id: int) -> float | None:
        """Seconds since the job was last worked on; None when it never was here."""
        try:
            mtime = (self.heartbeat_dir / f"{int(job_id)}.alive").stat().st_mtime
        except OSError:
            return None
        return max(0.0, time.time() - mtime)

    def forget_heartbeat(self, job_id: int) -> None:
        (self.heartbeat_dir / f"{int(job_id)}.alive").unlink(missing_ok=True)

    # An image lease says "a task is working on this image until <the file's mtime>": the
    # running task renews it, so after a kill -9 it lapses within `image_lease_s` and
    # reconcile knows the image's task is gone (docs/workers.md, Recovery).
    def _lease_path(self, image_id: int) -> Path:
        return self.heartbeat_dir / f"image-{int(image_id)}.lease"

    def lease_image(self, image_id: int, seconds: float) -> None:
        """Hold image `image_id` for `seconds` from now (renewing an existing lease)."""
        path = self._lease_path(image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        until = time.time() + seconds
        os.utime(path, (until, until))

    def image_leased(self, image_id: int) -> bool:
        """Whether a task holds image `image_id` now."""
        try:
            return self._lease_path(image_id).stat().st_mtime > time.time()
        except OSError:
            return False

    def release_image(self, image_id: int) -> None:
        self._lease_path(image_id).unlink(missing_ok=True)
