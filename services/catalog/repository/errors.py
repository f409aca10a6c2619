"""The catalog's domain errors, each with a stable code (asserted by tests and callers)."""

from __future__ import annotations

from services.common.errors import Conflict, DomainError, NotFound


class ImageNotFound(NotFound):
    code = "image_not_found"


class JobNotFound(NotFound):
    code = "job_not_found"


class UserNotFound(NotFound):
    code = "user_not_found"


class InvalidTransition(DomainError):
    """`from -> to` is not an edge of the status graph."""

    code = "invalid_transition"
    status = 422


class InvalidTag(DomainError):
    code = "invalid_tag"
    status = 422


class InvalidCursor(DomainError):
    """A page cursor that this catalog did not hand out (or that was altered)."""

    code = "invalid_cursor"
    status = 422


class TooManyItems(DomainError):
    code = "too_many_items"
    status = 422


class DuplicateIds(DomainError):
    """An id given twice in a batch whose entries each carry their own fields or outcome."""

    code = "duplicate_ids"
    status = 422


class UserExists(Conflict):
    code = "user_exists"


class WeakPassword(DomainError):
    code = "weak_password"
    status = 422


class LastAdmin(Conflict):
    """Deleting or demoting the only admin would lock everyone out of the admin routes."""

    code = "last_admin"
