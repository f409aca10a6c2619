"""Tag membership held by the index: which catalog ids carry each tag.

A filtered search names its tags and the index resolves them itself, so no query ships the
ids of a tag (at 10M images a 10% tag is a million ids, 20 s for the catalog to list).

Each tag's members are a sorted unique (m,) int64 array that is never written in place:
a change makes a new array, so a snapshot keeps references to the arrays of its instant
while writes go on. Changes are buffered per tag (`_added`, `_removed`) and merged when the
tag is read (a search, a snapshot): one O(m) merge per read after writes, not one per
write. `_of` maps an id to its tags (a tuple shared by every id with the same tags) so
that replacing an id's tags or dropping the id touches only its own tags.

Thread-safe (its own mutex): searches read under the index's read lock, and a read may
merge.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from services.index.store.protocol import Ids

_EMPTY: Ids = np.empty(0, np.int64)


def _merge(members: Ids, added: set[int], removed: set[int]) -> Ids:
    """(m,) sorted unique ids minus `removed`, plus `added`: a new sorted unique array."""
    out = members
    if removed:
        gone = np.fromiter(removed, np.int64, len(removed))
        out = out[~np.isin(out, gone)]
    if added:
        new = np.sort(np.fromiter(added, np.int64, len(added)))
        pos = np.searchsorted(out, new)
        fresh = (pos >= len(out)) | (out[np.minimum(pos, len(out) - 1)] != new) \
            if len(out) else np.ones(len(new), bool)
        out = np.insert(out, pos[fresh], new[fresh])
    return out


class TagSets:
    """Which ids carry which tags. See the module docstring."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._members: dict[str, Ids] = {}
        self._added: dict[str, set[int]] = {}
        self._removed: dict[str, set[int]] = {}
        self._of: dict[int, tuple[str, ...]] = {}
        self._shared: dict[tuple[str, ...], tuple[str, ...]] = {}
        # Bumped by every change: a cache of resolved filters compares it.
        self.version = 0

    # -- writes --------------------------------------------------------------------------
    def set(self, ids: Sequence[int], tags: Sequence[Iterable[str]]) -> None:
        """Replace the tags of each id (`tags[i]` for `ids[i]`; empty: no tags)."""
        if len(ids) != len(tags):
            raise ValueError(f"{len(ids)} ids for {len(tags)} tag lists")
        with self._mutex:
            for id_, names in zip(ids, tags, strict=True):
                self._assign(int(id_), tuple(sorted(set(names))))
            self.version += 1

    def drop(self, ids: Iterable[int]) -> None:
        """Forget the tags of `ids` (their images are gone)."""
        with self._mutex:
            for id_ in ids:
                self._assign(int(id_), ())
            self.version += 1

    def _assign(self, id_: int, new: tuple[str, ...]) -> None:
        old = self._of.get(id_, ())
        if old == new:
            return
        for tag in old:
            if tag not in new:
                self._added.get(tag, set()).discard(id_)
                self._removed.setdefault(tag, set()).add(id_)
        for tag in new:
            if tag not in old:
                self._removed.get(tag, set()).discard(id_)
                self._added.setdefault(tag, set()).add(id_)
        if new:
            self._of[id_] = self._shared.setdefault(new, new)
        else:
            self._of.pop(id_, None)

    # -- reads ---------------------------------------------------------------------------
    def _current(self, tag: str) -> Ids:
        """The members of `tag`, merging its buffered changes (the caller holds the mutex)."""
        added, removed = self._added.pop(tag, None), self._removed.pop(tag, None)
        members = self._members.get(tag, _EMPTY)
        if added or removed:
            members = _merge(members, added or set(), removed or set())
            if len(members):
                self._members[tag] = members
            else:
                self._members.pop(tag, None)
        return members

    def members(self, tag: str) -> Ids:
        """(m,) ascending ids carrying `tag` (do not write to it)."""
        with self._mutex:
            return self._current(tag)

    def matching(self, tags: Iterable[str]) -> Ids:
        """(m,) ascending ids carrying every one of `tags` (at least one tag)."""
        with self._mutex:
            sets = sorted((self._current(t) for t in set(tags)), key=len)
        if not sets:
            raise ValueError("no tags given")
        out = sets[0]
        for other in sets[1:]:
            if not len(out):
                break
            out = np.intersect1d(out, other, assume_unique=True)
        return out

    def tags_of(self, ids: Iterable[int]) -> list[list[str]]:
        with self._mutex:
            return [list(self._of.get(int(i), ())) for i in ids]

    def counts(self) -> dict[str, int]:
        with self._mutex:
            tags = set(self._members) | set(self._added) | set(self._removed)
            out = {t: len(self._current(t)) for t in sorted(tags)}
        return {t: n for t, n in out.items() if n}

    def __len__(self) -> int:
        """Ids with at least one tag."""
        return len(self._of)

    @property
    def nbytes(self) -> int:
        """About: the arrays, and ~100 bytes per id in `_of` (as the vector store counts)."""
        with self._mutex:
            arrays = sum(a.nbytes for a in self._members.values())
            return int(arrays + 100 * len(self._of))

    # -- persistence ---------------------------------------------------------------------
    def freeze(self) -> dict[str, Ids]:
        """Every tag's members now, as arrays no later write changes (O(changed members))."""
        with self._mutex:
            tags = set(self._members) | set(self._added) | set(self._removed)
            for tag in tags:
                self._current(tag)
            return dict(self._members)

    @staticmethod
    def to_arrays(frozen: dict[str, Ids]) -> tuple[list[str], Ids, Ids]:
        """(names, offsets (t + 1,), ids (total,)) of a frozen state, for a snapshot."""
        names = sorted(frozen)
        sizes = np.asarray([len(frozen[n]) for n in names], np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        ids = np.concatenate([frozen[n] for n in names]) if names else _EMPTY
        return names, offsets, np.asarray(ids, np.int64)

    @classmethod
    def from_arrays(cls, names: list[str], offsets: Ids, ids: Ids) -> TagSets:
        out = cls()
        by_id: dict[int, list[str]] = {}
        for t, name in enumerate(names):
            members = np.asarray(ids[offsets[t] : offsets[t + 1]], np.int64)
            if not len(members):
                continue
            out._members[name] = members
            for id_ in members.tolist():
                by_id.setdefault(id_, []).append(name)
        for id_, tags in by_id.items():
            key = tuple(sorted(tags))
            out._of[id_] = out._shared.setdefault(key, key)
        return out

    def state(self) -> dict[str, Any]:
        """{tag: [ids]} (tests and debugging)."""
        return {t: a.tolist() for t, a in self.freeze().items()}
