"""Settings of the workers: the `workers:` section of config.yaml, env IMGSEARCH_WORKERS_*.

The queue keys (broker, queue name, Redis prefix) live in `services.common.queue.QueueSettings`,
shared with the gateway; this class adds what only the workers need. The URLs of the other
services default to the host and port of their own sections (`services.common.peers`).
"""

from __future__ import annotations

from pydantic import Field

from services.common.peers import peer_url
from services.common.queue import QueueSettings


class WorkersSettings(QueueSettings, section="workers"):
    """Every key of the `workers:` section."""

    concurrency: int = Field(default=2, ge=1)
    catalog_url: str = ""
    index_url: str = ""
    embedding_url: str = ""
    http_timeout_s: float = Field(default=60.0, gt=0)
    # Every address of a service's name is used (replicas); names are resolved again this
    # often, and an address that failed to answer rests this long.
    resolve_every_s: float = Field(default=10.0, gt=0)
    address_cooldown_s: float = Field(default=5.0, ge=0)
    near_duplicate_threshold: float = Field(default=0.97, ge=-1.0, le=1.0)
    thumbnail_size: int = Field(default=320, ge=16, le=4096)
    thumbnail_quality: int = Field(default=80, ge=1, le=100)
    max_image_bytes: int = Field(default=50_000_000, ge=1)
    max_image_pixels: int = Field(default=100_000_000, ge=1)
    # Recovery (docs/workers.md): a pending or deleting row whose task is neither running
    # (no image lease) nor possibly queued (the queue is empty) is re-driven once it is
    # `pending_grace_s` old; with messages waiting in the queue, only after
    # `pending_timeout_s`. A running task renews its image lease (`image_lease_s` long)
    # every `image_lease_s / 3`, so a killed task's lease lapses within `image_lease_s`.
    pending_grace_s: float = Field(default=45.0, ge=0)
    pending_timeout_s: float = Field(default=900.0, gt=0)
    image_lease_s: float = Field(default=30.0, ge=3)
    # Beat: the light recovery pass (stuck rows, stuck jobs, consumed broker messages) and
    # the full reconcile (also every vector against the catalog).
    recover_every_s: float = Field(default=15.0, gt=0)
    reconcile_every_s: float = Field(default=600.0, gt=0)
    max_retries: int = Field(default=10, ge=0)
    retry_backoff_max_s: float = Field(default=60.0, gt=0)
    task_soft_time_limit_s: float = Field(default=300.0, gt=0)
    task_time_limit_s: float = Field(default=360.0, gt=0)
    # bulk_ingest, reindex and reconcile walk a whole gallery.
    long_task_time_limit_s: float = Field(default=86_400.0, gt=0)
    page_size: int = Field(default=200, ge=1, le=10_000)

    def resolved_catalog_url(self) -> str:
        return peer_url("catalog", self.catalog_url)

    def resolved_index_url(self) -> str:
        return peer_url("index", self.index_url)

    def resolved_embedding_url(self) -> str:
        return peer_url("embedding", self.embedding_url)
