"""A missing requirement skips locally and fails under CI=true; `optional` skips in both."""

from __future__ import annotations

import pytest

from tests.helpers.requirements import optional, require, require_module

Skipped = pytest.skip.Exception
Failed = pytest.fail.Exception


def test_an_available_requirement_lets_the_test_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    require("Chromium", True, "apt-get install chromium")
    assert require_module("json").dumps([]) == "[]"


def test_a_missing_requirement_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(Skipped, match="Chromium is not available: apt-get install chromium"):
        require("Chromium", False, "apt-get install chromium")
    with pytest.raises(Skipped, match="no_such_module_here"):
        require_module("no_such_module_here")


def test_a_missing_requirement_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(Failed, match=r"CI=true.*Chromium is not available"):
        require("Chromium", False, "apt-get install chromium")
    with pytest.raises(Failed, match="no_such_module_here"):
        require_module("no_such_module_here")


def test_only_ci_true_counts_as_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "false")
    with pytest.raises(Skipped):
        require("Redis", False, "set IMGSEARCH_TEST_REDIS_URL")


def test_an_optional_tool_skips_even_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(Skipped, match="a Docker engine is not available"):
        optional("a Docker engine", "docker info failed")
