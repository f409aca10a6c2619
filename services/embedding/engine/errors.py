"""Errors of the engine."""

from __future__ import annotations

from services.common.errors import DomainError


class WeightsError(DomainError):
    """A weights file that cannot be used: unreadable, unsafe, or not matching the model.

    The message names the offending key (missing, unexpected, or of the wrong shape).
    """

    code = "invalid_weights"
    status = 422
