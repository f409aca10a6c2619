"""Keeps the children of `imgsearch up` running: a child that exits is started again after a
backoff that doubles with each quick failure; after `max_quick_failures` in a row (each within
`stable_s` of its start) the supervisor gives up with the child's own error lines. An optional
child (object search) is dropped instead, and the rest keeps running.

This is what `imgsearch up` gives on one machine; a deployment runs `imgsearch worker` and
`imgsearch serve` under its own supervisor (systemd `Restart=`, a Compose restart policy).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol


class Supervised(Protocol):
    name: str

    def alive(self) -> bool: ...

    def returncode(self) -> int | None: ...

    def restart(self) -> None: ...

    def failure(self) -> str: ...


@dataclass(frozen=True)
class RestartPolicy:
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    # A child that ran this long before exiting was working: its failure count starts over.
    stable_s: float = 60.0
    max_quick_failures: int = 5

    def delay(self, quick_failures: int) -> float:
        """Seconds to wait before the restart that follows the n-th quick failure."""
        return min(self.max_backoff_s, self.backoff_s * 2 ** max(0, quick_failures - 1))


class GaveUp(Exception):
    """A required child kept exiting; the message says which and why."""


@dataclass
class _Watch:
    child: Supervised
    started_at: float
    quick_failures: int = 0
    restarts: int = 0
    restart_at: float | None = None


@dataclass
class Supervisor:
    children: Sequence[Supervised]
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    optional: frozenset[str] = frozenset()
    say: Callable[[str], None] = print
    clock: Callable[[], float] = time.monotonic
    _watches: dict[str, _Watch] = field(default_factory=dict)

    def __post_init__(self) -> None:
        now = self.clock()
        self._watches = {c.name: _Watch(c, now) for c in self.children}

    def restarts(self, name: str) -> int:
        return self._watches[name].restarts

    def dropped(self) -> list[str]:
        return [c.name for c in self.children if c.name not in self._watches]

    def check(self) -> None:
        """One round: note exits, restart the children whose backoff has passed. Raises
        `GaveUp` when a required child failed quickly too many times in a row."""
        now = self.clock()
        for name, watch in list(self._watches.items()):
            child = watch.child
            if watch.restart_at is None:
                if child.alive():
                    continue
                self._exited(watch, now)
            elif now >= watch.restart_at:
                watch.restart_at = None
                watch.restarts += 1
                watch.started_at = now
                child.restart()
                self.say(f"{name} restarted (restart {watch.restarts})")

    def _exited(self, watch: _Watch, now: float) -> None:
        child = watch.child
        ran = now - watch.started_at
        watch.quick_failures = watch.quick_failures + 1 if ran < self.policy.stable_s else 1
        code = child.returncode()
        if watch.quick_failures > self.policy.max_quick_failures:
            reason = (f"{child.name} exited {watch.quick_failures} times in a row, each within "
                      f"{self.policy.stable_s:.0f} s of starting (last exit code {code}):\n"
                      f"{child.failure()}")
            if child.name in self.optional:
                del self._watches[child.name]
                self.say(f"giving up on {reason}\n{child.name} stays off; the rest keeps "
                         "running")
                return
            raise GaveUp(reason)
        delay = self.policy.delay(watch.quick_failures)
        watch.restart_at = now + delay
        self.say(f"{child.name} exited with code {code} after {ran:.0f} s; restarting in "
                 f"{delay:g} s")
