"""Settings: YAML defaults, environment overrides, no default secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.settings import CommonSettings, SectionSettings


class DemoSettings(SectionSettings, section="embedding"):
    model: str = "unset"
    max_batch: int = 1


def test_yaml_section_and_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("data_dir: /srv/img\nembedding:\n  port: 9101\n  model: dinov2_vits14\n")
    monkeypatch.setenv("IMGSEARCH_CONFIG", str(config))
    monkeypatch.setenv("IMGSEARCH_EMBEDDING_MAX_BATCH", "4")
    monkeypatch.delenv("IMGSEARCH_DATA_DIR", raising=False)
    settings = DemoSettings()
    assert (settings.port, settings.model, settings.max_batch) == (9101, "dinov2_vits14", 4)
    assert CommonSettings().data_dir == Path("/srv/img")
    monkeypatch.setenv("IMGSEARCH_EMBEDDING_MODEL", "dinov2_vitl14")
    assert DemoSettings().model == "dinov2_vitl14"


def test_repository_config_is_loadable() -> None:
    settings = DemoSettings()
    assert settings.port == 8101


def test_internal_token_has_no_default(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="IMGSEARCH_INTERNAL_TOKEN"):
        CommonSettings().require_internal_token()
    monkeypatch.setenv("IMGSEARCH_INTERNAL_TOKEN", "short")
    with pytest.raises(ValueError):
        CommonSettings().require_internal_token()
    monkeypatch.setenv("IMGSEARCH_INTERNAL_TOKEN", "x" * 24)
    assert CommonSettings().require_internal_token() == "x" * 24
