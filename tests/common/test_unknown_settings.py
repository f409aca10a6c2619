"""A misspelt key of config.yaml or IMGSEARCH_* variable is named in a warning, not dropped."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from services.common.settings import (
    REPO_ROOT,
    common_settings,
    known_keys,
    unknown_settings,
    warn_unknown_settings,
)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "services.common.settings" and r.levelno == logging.WARNING]


def test_the_shipped_config_has_no_unknown_key() -> None:
    config = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())
    assert unknown_settings(config, {}, known_keys()) == []


def test_every_section_is_known_in_every_process() -> None:
    # Each process imports only its own settings classes; the check reads them all.
    keys = known_keys()
    assert {"embedding", "segmentation", "index", "catalog", "database", "workers", "gateway",
            "sakura"} <= set(keys)
    assert "max_k" in keys["index"] and "url" in keys["database"] and "count" in keys["sakura"]


def test_a_misspelt_yaml_key_is_named_with_the_closest_one() -> None:
    config = {"data_dir": "/srv", "log_levle": "INFO", "nonsense": 1,
              "gateway": {"max_k": 300, "publc_search": False},
              "index": {"max_k": 10}}
    assert unknown_settings(config, {}, known_keys()) == [
        "config.yaml: unknown key 'log_levle'; did you mean log_level?",
        "config.yaml: unknown key 'nonsense'",
        "config.yaml: unknown key gateway.publc_search; did you mean public_search?",
    ]


def test_a_misspelt_variable_is_named_and_the_projects_own_are_not() -> None:
    environ = {
        "IMGSEARCH_GATEWAY_MAX_KK": "300",  # misspelt
        "IMGSEARCH_INDEX_MAX_K": "100",
        "IMGSEARCH_DATA_DIR": "/srv",
        "IMGSEARCH_DATABASE_URL": "sqlite://",
        "imgsearch_log_level": "DEBUG",  # pydantic-settings reads names in any case
        "IMGSEARCH_TEST_MYSQL_URL": "mysql+pymysql://root@127.0.0.1/test",
        "IMGSEARCH_TEST_ANYTHING_NEW": "1",
        "IMGSEARCH_CONFIG": "/etc/imgsearch.yaml",
        "IMGSEARCH_PASSWORD": "secret",
        "IMGSEARCH_PORT": "8000",
        "PATH": "/usr/bin",
    }
    assert unknown_settings({}, environ, known_keys()) == [
        "environment: unknown variable IMGSEARCH_GATEWAY_MAX_KK; "
        "did you mean IMGSEARCH_GATEWAY_MAX_K?",
    ]


def test_the_warning_is_logged_once_per_settings_load(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("embedding:\n  max_bacth: 4\n")
    monkeypatch.setenv("IMGSEARCH_CONFIG", str(config))
    monkeypatch.setenv("IMGSEARCH_SEGMENTATION_THREDS", "2")
    caplog.set_level(logging.WARNING, logger="services.common.settings")
    warn_unknown_settings()
    assert _warnings(caplog) == [
        "config.yaml: unknown key embedding.max_bacth; did you mean max_batch? (ignored)",
        "environment: unknown variable IMGSEARCH_SEGMENTATION_THREDS; "
        "did you mean IMGSEARCH_SEGMENTATION_THREADS? (ignored)",
    ]
    caplog.clear()
    common_settings.cache_clear()
    try:
        common_settings()
        common_settings()
        assert len(_warnings(caplog)) == 2
    finally:
        common_settings.cache_clear()
