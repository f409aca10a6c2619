"""Form fields of `POST /v1/segment` beside the prompts: which parts of the answer to build.
(The image's content hash is checked by `services.common.storage.parse_sha256`.)"""

from __future__ import annotations

from services.common.errors import DomainError

# The parts of an answer that cost time to encode and bytes to send; box, score, sizes and
# the hash are always there.
OUTPUTS = ("png", "rle", "candidates", "low_res")
ALL_OUTPUTS = frozenset(OUTPUTS)


class InvalidOutputs(DomainError):
    code = "invalid_outputs"
    status = 422


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
