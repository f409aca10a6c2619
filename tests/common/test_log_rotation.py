"""log_file: logs go to a file that rotates past log_max_bytes, keeping log_backups files."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from services.common.logging import configure_logging
from services.common.settings import CommonSettings


def test_logs_rotate(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "gateway.log"
    root = logging.getLogger()
    level = root.level
    try:
        configure_logging("INFO", "json", log_file=path, max_bytes=4096, backups=2)
        log = logging.getLogger("imgsearch.test")
        for i in range(400):
            log.info("line %d %s", i, "x" * 40)
        files = sorted(p.name for p in path.parent.iterdir())
        assert files == ["gateway.log", "gateway.log.1", "gateway.log.2"]
        assert all(p.stat().st_size <= 4096 for p in path.parent.iterdir())
        assert '"msg": "line 399' in path.read_text()
    finally:
        configure_logging("INFO", "json")  # back to stderr (drops the file handler)
        root.setLevel(level)


def test_log_file_is_under_the_data_dir_unless_absolute(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    assert CommonSettings(data_dir=tmp_path).log_path is None
    assert CommonSettings(data_dir=tmp_path, log_file="logs/x.log").log_path == \
        tmp_path.resolve() / "logs" / "x.log"
    assert CommonSettings(data_dir=tmp_path, log_file="/var/log/x.log").log_path == \
        Path("/var/log/x.log")
