"""The words every service shares: image statuses and their graph, job lifecycle, roles,
the image files a gallery holds, the deepest search.

One definition each (docs/catalog.md explains the graphs): the catalog's models, schemas and
repository, the workers, the gateway, the command line and the test fakes import them. They
are `StrEnum`s, so a member equals its string on the wire and in the database.

The image status graph (`from -> to`):

    pending  -> indexed | failed | deleting   (ingest done or failed; deleted before ingest)
    indexed  -> deleting                      (delete requested: gone from search at once)
    failed   -> pending | deleting            (retry; delete)
    deleting -> removed                       (vector and file gone; the row may then be deleted)
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType


class ImageStatus(StrEnum):
    pending = "pending"
    indexed = "indexed"
    failed = "failed"
    deleting = "deleting"
    removed = "removed"


IMAGE_EDGES: MappingProxyType[ImageStatus, frozenset[ImageStatus]] = MappingProxyType({
    ImageStatus.pending: frozenset({ImageStatus.indexed, ImageStatus.failed,
                                    ImageStatus.deleting}),
    ImageStatus.indexed: frozenset({ImageStatus.deleting}),
    ImageStatus.failed: frozenset({ImageStatus.pending, ImageStatus.deleting}),
    ImageStatus.deleting: frozenset({ImageStatus.removed}),
    ImageStatus.removed: frozenset(),
})

# Search shows these rows only (invariant 1 of the design).
SEARCHABLE = frozenset({ImageStatus.indexed})
# On the way out: the row is hidden everywhere and may only be deleted.
GONE = frozenset({ImageStatus.deleting, ImageStatus.removed})
# No edge leaves these.
TERMINAL = frozenset(s for s, targets in IMAGE_EDGES.items() if not targets)
# What an admin may filter the gallery by (a removed row is only there until it is deleted).
LISTED = tuple(s for s in ImageStatus if s not in TERMINAL)


def allowed_targets(from_: str) -> frozenset[ImageStatus]:
    """The statuses a row in `from_` may move to (none for an unknown status)."""
    try:
        return IMAGE_EDGES[ImageStatus(from_)]
    except ValueError:
        return frozenset()


def is_edge(from_: str, to: str) -> bool:
    return to in allowed_targets(from_)


class JobKind(StrEnum):
    ingest = "ingest"
    bulk_ingest = "bulk_ingest"
    delete = "delete"
    reindex = "reindex"
    reconcile = "reconcile"


class JobStatus(StrEnum):
    """queued -> running -> one of the finished statuses."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


JOB_FINISHED = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})
JOB_ACTIVE = tuple(s for s in JobStatus if s not in JOB_FINISHED)


class ItemState(StrEnum):
    """One image of a job: pending until a worker records its outcome."""

    pending = "pending"
    done = "done"
    failed = "failed"
    skipped = "skipped"


ITEM_OUTCOMES = tuple(s for s in ItemState if s is not ItemState.pending)


class Role(StrEnum):
    admin = "admin"
    viewer = "viewer"


ROLES: tuple[str, ...] = tuple(Role)

# Files a folder walk (bulk ingest, the command line, the self-check's assets) takes as
# images, by suffix; the content is checked when read.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})

# The most hits one index search returns, by default (the index section's `max_k`, which the
# gateway reads too): the gateway's deepest page (offset 10000 + k 200, plus the rows it
# over-fetches) fits in it.
INDEX_MAX_K = 16384
