"""Typed settings: a YAML file, then ``BRIEFXAI_<SECTION>_<KEY>`` environment overrides, validated.

One YAML file may hold a section per service (``gateway:``, ``embedding:``, ...). The file comes from
an explicit path or the ``BRIEFXAI_CONFIG`` environment variable. Nested keys use ``__`` in env
names, e.g. ``BRIEFXAI_FACETS_OPENAI__BASE_URL``. Environment values win over the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import yaml
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

CONFIG_ENV = "BRIEFXAI_CONFIG"


class ConfigError(ValueError):
    """An invalid or unreadable configuration; the message names the key at fault."""


class ServiceSettings(BaseSettings):
    """Settings every service has. Subclasses set ``section`` and their own ``env_prefix``."""

    section: ClassVar[str] = ""
    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="forbid")

    host: str = Field("0.0.0.0", description="Address the gRPC and HTTP servers bind to.")
    grpc_port: int = Field(0, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    http_port: int = Field(0, ge=0, le=65535, description="HTTP port for /metrics and /health; 0 picks one.")
    grace_period_seconds: float = Field(10.0, ge=0, description="In-flight calls get this long on shutdown.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"
    otlp_endpoint: str = Field(
        "", description="OTLP/gRPC collector, e.g. http://otel:4317; empty = no export."
    )
    max_message_mb: int = Field(256, ge=1, le=2047, description="Largest gRPC message accepted or sent.")
    max_concurrent_rpcs: int = Field(
        256, ge=1, description="Calls served at once; more get RESOURCE_EXHAUSTED."
    )

    @field_validator("grpc_port", "http_port", check_fields=False)
    @classmethod
    def _port_in_range(cls, port: int) -> int:
        # Declared as a validator (not only Field bounds) so subclasses that change a default keep it.
        if not 0 <= port <= 65535:
            raise ValueError("must be a port number in 0..65535")
        return port

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first so that it overrides values read from the YAML file (passed as init kwargs).
        return (env_settings, init_settings)

    @classmethod
    def load(cls, config_path: str | Path | None = None, **overrides: Any) -> Self:
        """Reads this service's section of the YAML file, applies env overrides, validates."""
        data = dict(read_section(cls.section, config_path))
        data.update(overrides)
        try:
            return cls(**data)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(cls.section, exc)) from exc


def read_section(section: str, config_path: str | Path | None = None) -> dict[str, Any]:
    """The mapping under ``section`` in the config file, or {} when there is no file or section."""
    path = config_path or os.environ.get(CONFIG_ENV)
    if not path:
        return {}
    try:
        document = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping of sections")
    value = document.get(section, {}) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"config file {path}: section '{section}' must be a mapping")
    return value


def describe_validation_error(section: str, exc: ValidationError) -> str:
    """'embedding.grpc_port: Input should be less than or equal to 65535 (got 70000)' for each error."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in (section, *error["loc"]) if part != "")
        env = "BRIEFXAI_" + "_".join([section.upper(), "__".join(str(p).upper() for p in error["loc"])])
        lines.append(f"{key}: {error['msg']} (got {error.get('input')!r}; env {env})")
    return "invalid configuration: " + "; ".join(lines)
