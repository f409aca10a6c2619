"""Running a write transaction with retries on MySQL deadlocks and lock wait timeouts."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from services.catalog.db.engine import Database

logger = logging.getLogger(__name__)

T = TypeVar("T")

# ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT: the server rolled the transaction back.
_RETRYABLE = {1213, 1205}
ATTEMPTS = 8
# Before attempt n+1, a random pause of up to BACKOFF_S * 2**n (at most BACKOFF_MAX_S): the
# transactions that deadlocked together do not start again in the same instant.
BACKOFF_S = 0.005
BACKOFF_MAX_S = 0.5


def _retryable(exc: OperationalError) -> bool:
    args: tuple[object, ...] = tuple(getattr(exc.orig, "args", ()))
    return bool(args) and args[0] in _RETRYABLE


def transact(db: Database, fn: Callable[..., T], /, **kwargs: Any) -> T:
    """`fn(session=<write session>, **kwargs)`, again on a fresh session after a deadlock
    (after a short random pause, growing with each attempt). The catalog's routes are
    synchronous (a worker thread each), so the pause blocks no event loop."""
    for attempt in range(1, ATTEMPTS + 1):
        session: Session
        with db.write() as session:
            try:
                return fn(session=session, **kwargs)
            except OperationalError as exc:
                session.rollback()
                if not _retryable(exc) or attempt == ATTEMPTS:
                    raise
                logger.warning("transaction retried after %s (attempt %d)", exc.orig, attempt)
        time.sleep(random.uniform(0, min(BACKOFF_MAX_S, BACKOFF_S * 2 ** attempt)))
    raise AssertionError("unreachable")


def read(db: Database, fn: Callable[..., T], /, **kwargs: Any) -> T:
    """`fn(session=<read session>, **kwargs)`."""
    with db.read() as session:
        return fn(session=session, **kwargs)
