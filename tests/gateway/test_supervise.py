"""The supervisor of `imgsearch up` with real (tiny) child processes: a killed child is
started again; one that keeps failing at once is given up with its own error lines; an
optional one is dropped while the rest keeps running."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from imgsearch.commands.supervise import GaveUp, RestartPolicy, Supervisor
from imgsearch.commands.up import Child

FAST = RestartPolicy(backoff_s=0.05, max_backoff_s=0.2, stable_s=30, max_quick_failures=3)


def child(tmp_path: Path, name: str, code: str) -> Child:
    proc = Child(name, [sys.executable, "-c", code], tmp_path / f"{name}.log")
    proc.start(dict(os.environ))
    return proc


def run_until(supervisor: Supervisor, done: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "supervisor did not get there in time"
        supervisor.check()
        time.sleep(0.02)


def test_a_killed_child_is_restarted(tmp_path: Path) -> None:
    sleeper = child(tmp_path, "worker", "import time; time.sleep(60)")
    said: list[str] = []
    supervisor = Supervisor([sleeper], FAST, say=said.append)
    try:
        assert sleeper.proc is not None
        first = sleeper.proc.pid
        os.killpg(first, signal.SIGKILL)
        run_until(supervisor, lambda: supervisor.restarts("worker") == 1 and sleeper.alive())
        assert sleeper.proc.pid != first
        assert said[0].startswith("worker exited with code -9")
        assert said[1] == "worker restarted (restart 1)"
    finally:
        sleeper.stop()


def test_quick_failures_give_up_with_the_childs_error(tmp_path: Path) -> None:
    broken = child(tmp_path, "catalog",
                   "import sys; print('ERROR cannot open the database'); sys.exit(3)")
    said: list[str] = []
    supervisor = Supervisor([broken], FAST, say=said.append)
    with pytest.raises(GaveUp) as info:
        run_until(supervisor, lambda: False)
    message = str(info.value)
    assert "catalog exited 4 times in a row" in message and "exit code 3" in message
    assert "cannot open the database" in message
    assert supervisor.restarts("catalog") == 3
    # Each wait doubles, up to the cap.
    assert [line.rsplit(" ", 2)[-2] for line in said if "restarting in" in line] == [
        "0.05", "0.1", "0.2"]


def test_an_optional_child_is_dropped_and_the_rest_runs(tmp_path: Path) -> None:
    broken = child(tmp_path, "segmentation", "import sys; sys.exit(1)")
    sleeper = child(tmp_path, "index", "import time; time.sleep(60)")
    said: list[str] = []
    supervisor = Supervisor([broken, sleeper], FAST, optional=frozenset({"segmentation"}),
                            say=said.append)
    try:
        run_until(supervisor, lambda: supervisor.dropped() == ["segmentation"])
        assert "segmentation stays off" in said[-1]
        for _ in range(5):
            supervisor.check()
        assert sleeper.alive() and supervisor.restarts("index") == 0
    finally:
        sleeper.stop()
