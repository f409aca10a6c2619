"""Limiting BLAS to one thread while the engine runs its own threads.

The engine parallelises by calling BLAS from several Python threads at once, so BLAS itself
must not start threads too (oversubscription on 2 cores costs more than it gains). threadpoolctl
finds every loaded BLAS (NumPy's and SciPy's OpenBLAS); the limit is process-wide and is
restored on exit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_controller: Any = None
_lock = threading.Lock()
_depth = 0
_saved: Any = None


def _get_controller() -> Any:
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Run the body with every BLAS limited to `n` threads (nested uses share one limit)."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = _get_controller().limit(limits=n, user_api="blas")
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                _saved.restore_original_limits()
                _saved = None
