"""Errors of the index domain, each with a stable code."""

from __future__ import annotations

from services.common.errors import Conflict, DomainError, NotFound


class ModelMismatch(Conflict):
    """The index holds vectors of another model."""

    code = "model_mismatch"


class DimensionMismatch(DomainError):
    """The vectors do not have the dimension the index holds."""

    code = "dimension_mismatch"
    status = 422


class InvalidIds(DomainError):
    code = "invalid_ids"
    status = 422


class InvalidIndexType(DomainError):
    """An unknown index type or parameters the type cannot use."""

    code = "invalid_index_type"
    status = 422


class StagingNotFound(NotFound):
    code = "staging_not_found"


class IndexUnavailable(DomainError):
    """The backend cannot serve (for example Milvus is unreachable)."""

    code = "index_unavailable"
    status = 503
