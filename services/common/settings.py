"""Settings: `config/config.yaml` first, the environment over it.

Top-level keys come from `IMGSEARCH_<KEY>`, a section's keys from `IMGSEARCH_<SECTION>_<KEY>`.
Each service has one settings class: a subclass of `SectionSettings` naming its section.

Every process shares the one file, and each reads only its own sections, so a misspelt key
would be ignored silently: `warn_unknown_settings` (run once, by `common_settings`) logs a
warning for a key of config.yaml or an `IMGSEARCH_*` variable that no settings class of any
service defines, naming the closest known one.
"""

from __future__ import annotations

import difflib
import importlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

logger = logging.getLogger(__name__)

ENV_PREFIX = "IMGSEARCH_"
REPO_ROOT = Path(__file__).resolve().parents[2]

# The modules whose settings classes declare the sections of config.yaml. They are imported by
# name, only to read which keys exist, so no service's code depends on another's.
SETTINGS_MODULES = (
    "services.common.peers",
    "services.common.queue",
    "services.embedding.config",
    "services.segmentation.config",
    "services.index.config",
    "services.catalog.config",
    "services.workers.config",
    "gateway.config",
)
# IMGSEARCH_* variables read outside the settings classes: the file in force, the command
# line's gateway and login (imgsearch/commands/_api.py), the published port of
# docker-compose.yml, the gateway `npm run dev` forwards to (web/vite.config.js), and the test
# suite's own (tests/conftest.py and others).
OTHER_VARIABLES = frozenset({f"{ENV_PREFIX}CONFIG", f"{ENV_PREFIX}URL", f"{ENV_PREFIX}USERNAME",
                             f"{ENV_PREFIX}PASSWORD", f"{ENV_PREFIX}PORT",
                             f"{ENV_PREFIX}GATEWAY_URL"})
OTHER_PREFIXES = (f"{ENV_PREFIX}TEST_",)


def config_path() -> Path:
    """The YAML file in force: `$IMGSEARCH_CONFIG`, else `config/config.yaml` of the checkout."""
    explicit = os.environ.get(f"{ENV_PREFIX}CONFIG")
    if explicit:
        return Path(explicit)
    local = Path.cwd() / "config" / "config.yaml"
    return local if local.is_file() else REPO_ROOT / "config" / "config.yaml"


def images_dir_of(data_dir: Path) -> Path:
    """Where the gallery's files live under a data directory (every process reads them)."""
    return data_dir / "images"


def thumbs_dir_of(data_dir: Path) -> Path:
    """Where the workers write thumbnails and the gateway serves them from."""
    return data_dir / "thumbs"


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
    # Empty: logs go to stderr. Else this file (relative: under data_dir), rotated past
    # log_max_bytes, keeping log_backups old files.
    log_file: str = ""
    # Decoded image pixels one process holds at once, all requests together (MB), and how
    # long a decode waits for room before answering 503 (services/common/images.py).
    decode_budget_mb: int = Field(default=512, ge=16)
    decode_wait_s: float = Field(default=10.0, gt=0)
    log_max_bytes: int = Field(default=10 * 2**20, ge=4096)
    log_backups: int = Field(default=5, ge=0, le=100)

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def log_path(self) -> Path | None:
        if not self.log_file:
            return None
        path = Path(self.log_file).expanduser()
        return path if path.is_absolute() else self.data_dir / path

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def images_dir(self) -> Path:
        return images_dir_of(self.data_dir)

    @property
    def thumbs_dir(self) -> Path:
        return thumbs_dir_of(self.data_dir)

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

    # How the service is served (services/common/server.py; docs/security.md says why).
    # Proxies (addresses or networks) whose X-Forwarded-For / X-Forwarded-Proto are believed;
    # empty: the headers are ignored and the client is the connection's address.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Idle keep-alive connections closed after this; a request's headers must be complete
    # this long after its first byte; a body may pause at most this long between pieces.
    timeout_keep_alive_s: float = Field(default=5.0, gt=0, le=3600)
    timeout_headers_s: float = Field(default=10.0, gt=0, le=3600)
    timeout_body_s: float = Field(default=30.0, gt=0, le=3600)
    # Open connections (and requests in flight) at once; past it new requests get 503.
    max_connections: int = Field(default=1000, ge=1)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        # IMGSEARCH_GATEWAY_TRUSTED_PROXIES="10.0.0.0/8,127.0.0.1" as well as a YAML list.
        if isinstance(value, str) and value.lstrip().startswith("["):
            return json.loads(value)
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    # Every class of each section, as the modules defining them are imported.
    sections: ClassVar[dict[str, list[type[SectionSettings]]]] = {}

    def __init_subclass__(cls, section: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if section is not None:
            SectionSettings.sections.setdefault(section, []).append(cls)
            cls.yaml_section = section
            cls.model_config = SettingsConfigDict(
                env_prefix=f"{ENV_PREFIX}{section.upper()}_", extra="ignore"
            )


@lru_cache(maxsize=1)
def common_settings() -> CommonSettings:
    """The process-wide common settings (tests call `common_settings.cache_clear()`)."""
    settings = CommonSettings()
    warn_unknown_settings()
    return settings


def known_keys() -> dict[str | None, frozenset[str]]:
    """Every key a settings class defines: the top level under None, then each section."""
    for module in SETTINGS_MODULES:
        importlib.import_module(module)
    keys: dict[str | None, frozenset[str]] = {None: frozenset(CommonSettings.model_fields)}
    for section, classes in SectionSettings.sections.items():
        keys[section] = frozenset(name for cls in classes for name in cls.model_fields)
    return keys


def _closest(name: str, known: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {match[0]}?" if match else ""


def unknown_settings(config: Mapping[str, Any], environ: Mapping[str, str],
                     keys: Mapping[str | None, frozenset[str]]) -> list[str]:
    """One sentence per key of `config` (config.yaml's content) and per IMGSEARCH_* name of
    `environ` that `keys` (`known_keys()`) does not define."""
    problems: list[str] = []
    top = keys[None] | {s for s in keys if s is not None}
    for key, value in config.items():
        if key not in top:
            problems.append(f"config.yaml: unknown key {key!r}{_closest(key, top)}")
        elif key in keys and isinstance(value, Mapping):
            for sub in value:
                if sub not in keys[key]:
                    problems.append(f"config.yaml: unknown key {key}.{sub}"
                                    f"{_closest(sub, keys[key])}")
    names = {ENV_PREFIX + key.upper() for key in keys[None]}
    for section, fields in keys.items():
        if section is not None:
            names |= {f"{ENV_PREFIX}{section.upper()}_{key.upper()}" for key in fields}
    for name in sorted(environ):
        upper = name.upper()
        if (not upper.startswith(ENV_PREFIX) or upper in names or upper in OTHER_VARIABLES
                or upper.startswith(OTHER_PREFIXES)):
            continue
        problems.append(f"environment: unknown variable {name}{_closest(upper, names)}")
    return problems


def warn_unknown_settings() -> None:
    """Log a warning per key of config.yaml and IMGSEARCH_* variable no service defines."""
    try:
        keys = known_keys()
    except ImportError as exc:  # a process without some service's packages: cannot judge
        logger.debug("settings keys not checked: %s", exc)
        return
    path = config_path()
    config: Any = {}
    if path.is_file():
        try:
            config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            config = {}  # the settings classes report an unreadable file themselves
    for problem in unknown_settings(config if isinstance(config, Mapping) else {},
                                    os.environ, keys):
        logger.warning("%s (ignored)", problem)
