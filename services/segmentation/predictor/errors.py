"""Errors of the segmentation domain, each with a stable code."""

from __future__ import annotations

from services.common.errors import DomainError


class InvalidPrompts(DomainError):
    """No prompt, a point outside the image, a bad box, a label other than 0/1, a bad mask."""

    code = "invalid_prompts"
    status = 422


class ImageFileMissing(DomainError):
    """The catalog knows the image but its file is not on disk."""

    code = "image_file_missing"
    status = 404


class WeightsUnavailable(DomainError):
    """No weights file and no way to get one (offline, download disabled)."""

    code = "weights_unavailable"
    status = 503


class WeightsChecksumMismatch(DomainError):
    """The weights file differs from the pinned or the recorded SHA-256."""

    code = "weights_checksum_mismatch"
    status = 503


class ModelLoading(DomainError):
    code = "model_loading"
    status = 503


class ModelUnavailable(DomainError):
    code = "model_unavailable"
    status = 503


class ImageNotCached(DomainError):
    """A click names its image by content hash and that image's embedding is not cached
    (never sent here, evicted, or the service restarted): send the image again."""

    code = "image_not_cached"
    status = 409


class SelectionExpired(DomainError):
    """A click names an earlier selection (`selection_id`) that this service no longer holds
    (evicted, restarted, another image or another user's): send the clicks without it."""

    code = "selection_expired"
    status = 409
