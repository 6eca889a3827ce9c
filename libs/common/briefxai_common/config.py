"""Typed settings: a YAML file, then ``BRIEFXAI_<SECTION>_<KEY>`` environment overrides, validated.

One YAML file may hold a section per service (``gateway:``, ``embedding:``, ...). The file comes from
an explicit path or the ``BRIEFXAI_CONFIG`` environment variable. Nested keys use ``__`` in env
names, e.g. ``BRIEFXAI_FACETS_OPENAI__BASE_URL``. Environment values win over the file.

A top-level ``monitoring:`` block (the reference's shape) is mapped onto every service's settings
(:meth:`MonitoringBlock.section_values`); a service's own section wins over it, the environment over
both. Unknown keys inside it are a configuration error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from briefxai_common.logging import mask_secrets

CONFIG_ENV = "BRIEFXAI_CONFIG"
MONITORING = "monitoring"
# monitoring.prometheus.port is the gateway's HTTP port; the others follow it in this order (the
# defaults 9091..9094 are this rule applied to 9091).
HTTP_PORT_OFFSETS = {"gateway": 0, "embedding": 1, "facets": 2, "clustering": 3}


class ConfigError(ValueError):
    """An invalid or unreadable configuration; the message names the key at fault."""


class PerformanceSettings(BaseModel):
    """What the process measures about itself (``monitoring.performance`` maps here)."""

    model_config = ConfigDict(extra="forbid")

    enable_profiling: bool = Field(
        False, description="Serve GET /debug/profile?seconds=N (cProfile of the event-loop thread)."
    )
    track_memory: bool = Field(True, description="Report the resident memory (/health memory_usage_mb).")
    track_cpu: bool = Field(True, description="Report the CPU time used (/health cpu_seconds).")


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
    log_file: str = Field("", description="Write log lines to this file, rotated, instead of stderr.")
    log_max_mb: float = Field(100.0, gt=0, description="The log file is rotated when it reaches this size.")
    log_backups: int = Field(5, ge=0, description="Rotated log files kept (<file>.1 ... <file>.N).")
    metrics_enabled: bool = Field(True, description="Serve /metrics on the HTTP port.")
    performance: PerformanceSettings = Field(default_factory=lambda: PerformanceSettings.model_validate({}))
    otlp_endpoint: str = Field(
        "",
        description="OTLP collector, e.g. http://otel:4317 (https:// for TLS); empty = "
        "OTEL_EXPORTER_OTLP_ENDPOINT, else no export.",
    )
    otlp_certificate: str = Field(
        "",
        description="CA certificate file for TLS to the collector; empty = OTEL_EXPORTER_OTLP_CERTIFICATE.",
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
        """Reads this service's section of the YAML file (over the monitoring block), applies env
        overrides, validates."""
        data = effective_section(cls.section, config_path)
        data.update(overrides)
        try:
            return cls(**data)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(cls.section, exc)) from exc


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PrometheusBlock(_Block):
    enabled: bool | None = None
    port: int | None = Field(None, ge=1, le=65535 - max(HTTP_PORT_OFFSETS.values()))


class OpenTelemetryBlock(_Block):
    enabled: bool | None = None
    endpoint: str | None = None


class PerformanceBlock(_Block):
    enable_profiling: bool | None = None
    track_memory: bool | None = None
    track_cpu: bool | None = None


class MonitoringBlock(_Block):
    """The reference's top-level ``monitoring:`` block; unset keys leave our defaults alone."""

    enabled: bool = True
    prometheus: PrometheusBlock = Field(default_factory=lambda: PrometheusBlock.model_validate({}))
    opentelemetry: OpenTelemetryBlock = Field(default_factory=lambda: OpenTelemetryBlock.model_validate({}))
    performance: PerformanceBlock = Field(default_factory=lambda: PerformanceBlock.model_validate({}))

    def section_values(self, section: str) -> dict[str, Any]:
        """Settings of ``section`` this block implies: ``enabled: false`` turns metrics, trace export
        and the performance tracking off; ``prometheus.enabled`` is ``metrics_enabled``;
        ``prometheus.port`` is the gateway's ``http_port`` (embedding +1, facets +2, clustering +3);
        ``opentelemetry.enabled: false`` empties ``otlp_endpoint``, ``opentelemetry.endpoint`` sets it;
        ``performance.*`` is ``performance.*``."""
        values: dict[str, Any] = {}
        if self.prometheus.port is not None:
            values["http_port"] = self.prometheus.port + HTTP_PORT_OFFSETS.get(section, 0)
        if not self.enabled:
            values["metrics_enabled"] = False
            values["otlp_endpoint"] = ""
            values["performance"] = {"enable_profiling": False, "track_memory": False, "track_cpu": False}
            return values
        if self.prometheus.enabled is not None:
            values["metrics_enabled"] = self.prometheus.enabled
        if self.opentelemetry.enabled is False:
            values["otlp_endpoint"] = ""
        elif self.opentelemetry.endpoint is not None:
            values["otlp_endpoint"] = self.opentelemetry.endpoint
        performance = self.performance.model_dump(exclude_none=True)
        if performance:
            values["performance"] = performance
        return values


def _read_document(config_path: str | Path | None) -> tuple[str, dict[str, Any]]:
    """``(path, top-level mapping)`` of the config file; ``("", {})`` when there is none."""
    path = str(config_path or os.environ.get(CONFIG_ENV) or "")
    if not path:
        return "", {}
    try:
        document = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping of sections")
    return path, document


def read_section(section: str, config_path: str | Path | None = None) -> dict[str, Any]:
    """The mapping under ``section`` in the config file, or {} when there is no file or section."""
    path, document = _read_document(config_path)
    value = document.get(section, {}) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"config file {path}: section '{section}' must be a mapping")
    return value


def read_monitoring(config_path: str | Path | None = None) -> MonitoringBlock:
    """The file's ``monitoring:`` block, validated (unknown keys are errors); defaults when absent."""
    try:
        return MonitoringBlock.model_validate(read_section(MONITORING, config_path))
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(MONITORING, exc, env=False)) from exc


def effective_section(section: str, config_path: str | Path | None = None) -> dict[str, Any]:
    """``section``'s values as a service loads them: the monitoring block's, then the section's own."""
    return _merged(read_monitoring(config_path).section_values(section), read_section(section, config_path))


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def _shown_input(location: tuple[int | str, ...], value: Any) -> str:
    """The rejected value as an error message may show it: masked when its key or its text is a secret."""
    key = str(location[-1]) if location else "value"
    return repr(mask_secrets({key: value})[key])


def describe_validation_error(section: str, exc: ValidationError, env: bool = True) -> str:
    """'embedding.grpc_port: Input should be less than or equal to 65535 (got 70000)' for each error."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in (section, *error["loc"]) if part != "")
        got = f"got {_shown_input(error['loc'], error.get('input'))}"
        if env:
            name = "BRIEFXAI_" + "_".join([section.upper(), "__".join(str(p).upper() for p in error["loc"])])
            got += f"; env {name}"
        lines.append(f"{key}: {error['msg']} ({got})")
    return "invalid configuration: " + "; ".join(lines)
