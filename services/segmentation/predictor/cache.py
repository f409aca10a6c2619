"""A least-recently-used cache bounded by bytes: image embeddings keyed by content hash."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class Sized(Protocol):
    @property
    def nbytes(self) -> int: ...


V = TypeVar("V", bound=Sized)


@dataclass
class CacheStats:
    entries: int
    bytes: int
    max_bytes: int
    hits: int
    misses: int
    evictions: int


class ByteLRU(Generic[V]):
    """Entries evicted least recently used first while their bytes exceed `max_bytes`.

    An entry larger than the whole budget is not kept (the cache stays within its limit).
    Thread-safe.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, V] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get(self, key: str) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def peek(self, key: str) -> V | None:
        """The entry without counting a hit or refreshing its place."""
        with self._lock:
            return self._items.get(key)

    def put(self, key: str, value: V) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            if value.nbytes > self.max_bytes:
                return
            self._items[key] = value
            self._bytes += value.nbytes
            while self._bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= evicted.nbytes
                self.evictions += 1

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(len(self._items), self._bytes, self.max_bytes, self.hits,
                              self.misses, self.evictions)


class Grants:
    """Which scopes (a user, an anonymous client) have sent an image: `(sha256, scope)` pairs,
    the oldest forgotten first beyond `max_entries`.

    A click that names its image by hash alone is answered only for a scope that sent the
    image (its bytes, or a catalog id it may see): knowing a hash is not having the image.
    Thread-safe."""

    def __init__(self, max_entries: int = 65_536) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def grant(self, sha256: str, scope: str) -> None:
        with self._lock:
            self._items[(sha256, scope)] = None
            self._items.move_to_end((sha256, scope))
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def allows(self, sha256: str, scope: str) -> bool:
        with self._lock:
            return (sha256, scope) in self._items
