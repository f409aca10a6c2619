"""The image status graph: which `from -> to` edges exist.

pending  -> indexed | failed | deleting   (ingest done or failed; deleted before ingest)
indexed  -> deleting                      (delete requested: gone from search at once)
failed   -> pending | deleting            (retry; delete)
deleting -> removed                       (vector and file gone; the row may then be deleted)
"""

from __future__ import annotations

from types import MappingProxyType

from services.catalog.repository.errors import InvalidTransition

STATUSES = ("pending", "indexed", "failed", "deleting", "removed")

EDGES: MappingProxyType[str, frozenset[str]] = MappingProxyType({
    "pending": frozenset({"indexed", "failed", "deleting"}),
    "indexed": frozenset({"deleting"}),
    "failed": frozenset({"pending", "deleting"}),
    "deleting": frozenset({"removed"}),
    "removed": frozenset(),
})


def check_edge(from_: str, to: str) -> None:
    if to not in EDGES.get(from_, frozenset()):
        raise InvalidTransition(
            f"{from_} -> {to} is not an allowed status transition",
            detail={"from": from_, "to": to,
                    "allowed": sorted(EDGES.get(from_, frozenset()))},
        )
