"""Settings: `config/config.yaml` first, the environment over it.

Top-level keys come from `IMGSEARCH_<KEY>`, a section's keys from `IMGSEARCH_<SECTION>_<KEY>`.
Each service has one settings class: a subclass of `SectionSettings` naming its section.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

ENV_PREFIX = "IMGSEARCH_"
REPO_ROOT = Path(__file__).resolve().parents[2]


def config_path() -> Path:
    """The YAML file in force: `$IMGSEARCH_CONFIG`, else `config/config.yaml` of the checkout."""
    explicit = os.environ.get(f"{ENV_PREFIX}CONFIG")
    if explicit:
        return Path(explicit)
    local = Path.cwd() / "config" / "config.yaml"
    return local if local.is_file() else REPO_ROOT / "config" / "config.yaml"


class _YamlSettings(BaseSettings):
    """Base class wiring the YAML file (one section of it) under the environment."""

    yaml_section: ClassVar[str | None] = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = config_path()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        if path.is_file():
            sources.append(
                YamlConfigSettingsSource(
                    settings_cls, yaml_file=path, yaml_config_section=cls.yaml_section
                )
            )
        return tuple(sources)


class CommonSettings(_YamlSettings):
    """Keys every process shares (the top level of config.yaml)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    data_dir: Path = Path("./data")
    internal_token: SecretStr = SecretStr("")
    random_weights: bool = False
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def thumbs_dir(self) -> Path:
        return self.data_dir / "thumbs"

    def require_internal_token(self) -> str:
        """The internal token, refusing an empty or short one: there is no default secret."""
        token = self.internal_token.get_secret_value()
        if len(token) < 16:
            raise ValueError(
                "IMGSEARCH_INTERNAL_TOKEN is not set (or shorter than 16 characters): every "
                "service call carries it. Generate one: "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return token


class SectionSettings(_YamlSettings):
    """A service's settings: one section of config.yaml, env prefix IMGSEARCH_<SECTION>_."""

    model_config = SettingsConfigDict(extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)

    def __init_subclass__(cls, section: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if section is not None:
            cls.yaml_section = section
            cls.model_config = SettingsConfigDict(
                env_prefix=f"{ENV_PREFIX}{section.upper()}_", extra="ignore"
            )


@lru_cache(maxsize=1)
def common_settings() -> CommonSettings:
    """The process-wide common settings (tests call `common_settings.cache_clear()`)."""
    return CommonSettings()
