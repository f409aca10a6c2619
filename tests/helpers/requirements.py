"""What a test needs from the machine (a server, a browser, a library), checked in one place.

Locally a missing requirement skips the test with the reason, so a laptop without Chromium
still runs the rest. Under CI=true it fails the test instead: CI installs everything the suite
needs (.ci/run), so a requirement missing there is a broken setup, and a skip would hide every
test behind it.

`optional` is for the few things CI does not provide on purpose (a Docker engine: the
deployment test builds and runs the images with podman instead); it skips everywhere.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def missing(name: str, why: str) -> NoReturn:
    """Skip (locally) or fail (under CI=true) the running test: `name` is not available."""
    message = f"{name} is not available: {why}"
    if in_ci():
        pytest.fail(f"CI=true, and a requirement is missing: {message}", pytrace=False)
    # Module level too (`torch = require_module("torch")`): the whole module skips.
    pytest.skip(message, allow_module_level=True)


def require(name: str, available: bool, why: str) -> None:
    """Go on when `available`; else skip locally, fail under CI=true (`why`: what to do)."""
    if not available:
        missing(name, why)


def require_module(module: str, why: str = "") -> ModuleType:
    """Import `module`; when it is not installed, skip locally and fail under CI=true."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing(module, why or f"{exc} (pip install -e '.[dev]' installs the test extras)")


def optional(name: str, reason: str) -> NoReturn:
    """Skip everywhere, CI included: `name` is not part of what CI provides (see above)."""
    pytest.skip(f"{name} is not available: {reason}", allow_module_level=True)
