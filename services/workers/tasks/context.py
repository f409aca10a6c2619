"""What a task needs from its process: settings, service clients, folders, a way to enqueue.

Celery tasks build one per call from the process's settings; unit tests build one with fake
clients and a list that records what was enqueued.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.workers.clients import Clients
from services.workers.config import WorkersSettings

logger = logging.getLogger(__name__)

Enqueue = Callable[[str, dict[str, Any]], None]


@dataclass
class TaskContext:
    settings: WorkersSettings
    clients: Clients
    data_dir: Path
    enqueue: Enqueue

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def thumbs_dir(self) -> Path:
        return self.data_dir / "thumbs"

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
