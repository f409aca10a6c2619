"""Form fields of `POST /v1/segment` beside the prompts: the image by content hash, and which
parts of the answer to build."""

from __future__ import annotations

import re

from services.common.errors import DomainError

# The parts of an answer that cost time to encode and bytes to send; box, score, sizes and
# the hash are always there.
OUTPUTS = ("png", "rle", "candidates", "low_res")
ALL_OUTPUTS = frozenset(OUTPUTS)

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class InvalidImageSha256(DomainError):
    code = "invalid_image_sha256"
    status = 422


class InvalidOutputs(DomainError):
    code = "invalid_outputs"
    status = 422


def parse_sha256(text: str) -> str:
    """64 hex digits (either case) -> the lower-case digest; anything else is 422."""
    if not _SHA256.fullmatch(text):
        raise InvalidImageSha256("image_sha256 must be 64 hexadecimal digits (the "
                                 "image_sha256 of an earlier answer)")
    return text.lower()


def parse_outputs(text: str | None) -> frozenset[str]:
    """"rle,low_res" -> {"rle", "low_res"}; absent (or empty): every output; "none": none
    of them (box and score only)."""
    if text is None or not text.strip():
        return ALL_OUTPUTS
    names = {part.strip() for part in text.split(",")} - {""}
    if names == {"none"}:
        return frozenset()
    unknown = sorted(names - ALL_OUTPUTS)
    if unknown:
        raise InvalidOutputs(f"unknown outputs {unknown}; choose among {', '.join(OUTPUTS)}",
                             detail={"unknown": unknown, "allowed": list(OUTPUTS)})
    return frozenset(names)
