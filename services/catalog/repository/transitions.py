"""The catalog enforces the image status graph (`services.common.vocabulary.IMAGE_EDGES`)."""

from __future__ import annotations

from services.catalog.repository.errors import InvalidTransition
from services.common.vocabulary import allowed_targets


def check_edge(from_: str, to: str) -> None:
    allowed = allowed_targets(from_)
    if to not in allowed:
        raise InvalidTransition(
            f"{from_} -> {to} is not an allowed status transition",
            detail={"from": from_, "to": to, "allowed": sorted(str(s) for s in allowed)},
        )
