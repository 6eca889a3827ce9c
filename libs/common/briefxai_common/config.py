"""Typed settings: a YAML file, then ``BRIEFXAI_<SECTION>_<KEY>`` environment overrides, validated.

One YAML file may hold a section per service (``gateway:``, ``embedding:``, ...). The file comes from
an explicit path or the ``BRIEFXAI_CONFIG`` environment variable. Nested keys use ``__`` in env
names, e.g. ``BRIEFXAI_FACETS_OPENAI__BASE_URL``. Environment values win over the file.

A top-level ``monitoring:`` block (the reference's shape) is mapped onto every service's settings
(:meth:`MonitoringBlock.section_values`); a service's own section wins over it, the environment over
both. Unknown keys inside it are a configuration error.

A top-level ``features:`` block (flag name -> true/false, see ``features.py``) is every service's
``features`` setting; a service's own ``features:`` key wins over it per flag, the environment
(``BRIEFXAI_<SECTION>_FEATURES__<NAME>``) over both.

Top-level ``retry_policies:`` and ``circuit_breakers:`` blocks (the reference's shape: one entry per
operation or breaker, see :class:`RetryPolicySettings` and :class:`BreakerSettings`) go to the services
that use each entry (:data:`RETRY_POLICY_USERS`, :data:`BREAKER_USERS`) as their ``retry_policies.<name>``
and ``circuit_breakers.<name>`` settings: a key set there overrides that service's default, a key in the
service's own section wins over the block, the environment
(``BRIEFXAI_GATEWAY_RETRY_POLICIES__EMBEDDING__MAX_ATTEMPTS``) over both. Unknown names or keys are
configuration errors.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from briefxai_common.features import FLAG_NAME
from briefxai_common.logging import mask_secrets
from briefxai_common.resilience import CircuitBreaker, RetryPolicy

CONFIG_ENV = "BRIEFXAI_CONFIG"
MONITORING = "monitoring"
FEATURES = "features"
RETRY_POLICIES = "retry_policies"
CIRCUIT_BREAKERS = "circuit_breakers"
#: The entries of the top-level ``retry_policies:`` block each service uses: the gateway's calls to each
#: worker and to its store, the LLM calls of the facets service and of the clustering service's namer,
#: the embedding service's remote endpoint.
RETRY_POLICY_USERS: dict[str, tuple[str, ...]] = {
    "gateway": ("embedding", "facets", "clustering", "store"),
    "facets": ("llm_provider",),
    "clustering": ("llm_provider",),
    "embedding": ("embedding_remote",),
}
#: The entries of the top-level ``circuit_breakers:`` block each service uses (the facets service has one
#: breaker per LLM provider, all configured by ``llm_provider``).
BREAKER_USERS: dict[str, tuple[str, ...]] = {
    "gateway": ("embedding", "facets", "clustering"),
    "facets": ("llm_provider",),
    "clustering": ("llm_provider",),
    "embedding": ("embedding_remote",),
}
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


class RetryPolicySettings(BaseModel):
    """One operation's retry policy, in the reference's field names (times in milliseconds); what is
    retried and how is in :mod:`briefxai_common.resilience`. These defaults are the gRPC calls' between
    services; :class:`LLMRetryPolicySettings`, :class:`RemoteRetryPolicySettings` and
    :class:`StoreRetryPolicySettings` have their own."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(4, ge=1, description="Attempts per call, the first included.")
    initial_delay_ms: float = Field(200.0, ge=0, description="Backoff before the first retry.")
    max_delay_ms: float = Field(
        5000.0, ge=0, description="Longest backoff; a server asking for a longer wait ends the retries."
    )
    backoff_multiplier: float = Field(2.0, ge=1, description="Each backoff is this times the previous one.")
    jitter: bool = Field(True, description="Full jitter: each wait drawn uniformly from 0 to the backoff.")
    budget_ratio: float = Field(
        0.2, ge=0, description="Retry budget: retries at most this fraction of the calls of the last 10 s..."
    )
    budget_min_retries_per_second: float = Field(
        1.0, ge=0, description="...plus this many per second (so a quiet dependency can still be retried)."
    )

    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            initial_delay=self.initial_delay_ms / 1000.0,
            max_delay=self.max_delay_ms / 1000.0,
            multiplier=self.backoff_multiplier,
            jitter=self.jitter,
            budget_ratio=self.budget_ratio,
            budget_min_per_second=self.budget_min_retries_per_second,
        )


class LLMRetryPolicySettings(RetryPolicySettings):
    """``llm_provider``: calls to an OpenAI-compatible chat API (the reference's values)."""

    max_attempts: int = Field(5, ge=1, description="Attempts per request, the first included.")
    initial_delay_ms: float = Field(1000.0, ge=0, description="Backoff before the first retry.")
    max_delay_ms: float = Field(
        60000.0, ge=0, description="Longest backoff; a longer Retry-After ends the retries."
    )
    backoff_multiplier: float = Field(1.5, ge=1, description="Each backoff is this times the previous one.")


class RemoteRetryPolicySettings(RetryPolicySettings):
    """``embedding_remote``: the embedding service's calls to an OpenAI-compatible embeddings API."""

    max_attempts: int = Field(3, ge=1, description="Attempts per request, the first included.")
    initial_delay_ms: float = Field(500.0, ge=0, description="Backoff before the first retry.")
    max_delay_ms: float = Field(
        10000.0, ge=0, description="Longest backoff; a longer Retry-After ends the retries."
    )


class StoreRetryPolicySettings(RetryPolicySettings):
    """``store``: the gateway's database calls (SQLite lock timeouts, dropped PostgreSQL connections)."""

    max_attempts: int = Field(3, ge=1, description="Attempts per store call, the first included.")
    initial_delay_ms: float = Field(50.0, ge=0, description="Backoff before the first retry.")
    max_delay_ms: float = Field(1000.0, ge=0, description="Longest backoff.")


class BreakerSettings(BaseModel):
    """One circuit breaker (:class:`briefxai_common.resilience.CircuitBreaker`)."""

    model_config = ConfigDict(extra="forbid")

    failure_threshold: int = Field(
        5, ge=1, description="Consecutive failures (of the dependency) that open it."
    )
    success_threshold: int = Field(1, ge=1, description="Successful trial calls (or probes) that close it.")
    open_timeout_ms: float = Field(
        15000.0,
        ge=0,
        description="Open (calls refused at once) this long before trial calls; callers beyond the "
        "trials wait at most this long for them.",
    )
    half_open_max_calls: int = Field(1, ge=1, description="Trial calls let through at once while half-open.")
    probe_interval_ms: float = Field(
        5000.0,
        gt=0,
        description="While not closed, the dependency is probed this often (a gRPC health check, GET "
        "/models); a probe that succeeds counts as a successful trial.",
    )

    def breaker(
        self,
        name: str,
        *,
        is_failure: Callable[[BaseException], bool],
        probe: Callable[[], Awaitable[bool]] | None = None,
    ) -> CircuitBreaker:
        return CircuitBreaker(
            name,
            failure_threshold=self.failure_threshold,
            success_threshold=self.success_threshold,
            open_timeout=self.open_timeout_ms / 1000.0,
            half_open_max_calls=self.half_open_max_calls,
            is_failure=is_failure,
            probe=probe,
            probe_interval=self.probe_interval_ms / 1000.0,
        )


class TLSSettings(BaseModel):
    """TLS of the process' listeners and of the channels it opens to other services (``tls.py``).

    ``cert_file`` and ``key_file`` empty: plaintext. Set, they are the certificate (PEM, chain) the gRPC
    and HTTP ports serve, and the client certificate this process presents when it calls others. Calls to
    other services use TLS when ``cert_file`` or ``ca_file`` is set. Changes need a restart."""

    model_config = ConfigDict(extra="forbid")

    cert_file: str = Field("", description="PEM certificate (chain) served; empty with key_file = plaintext.")
    key_file: str = Field("", description="PEM private key of cert_file.")
    client_ca_file: str = Field(
        "",
        description="mTLS: the gRPC port requires client certificates signed by this CA (PEM); the HTTP "
        "port never asks for one (probes and scrapers).",
    )
    ca_file: str = Field(
        "", description="CA (PEM) that verifies the servers this process calls; empty = the system's roots."
    )
    server_name: str = Field(
        "",
        description="Name checked in the certificates of servers this process calls, instead of their host.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("cert_file and key_file go together: set both (TLS) or neither (plaintext)")
        if self.client_ca_file and not self.cert_file:
            raise ValueError("client_ca_file (mTLS) needs cert_file and key_file (TLS)")
        for key in ("cert_file", "key_file", "client_ca_file", "ca_file"):
            path = getattr(self, key)
            if path and not os.access(path, os.R_OK):
                raise ValueError(f"{key} {path!r} is not a readable file")
        return self

    @property
    def enabled(self) -> bool:
        """Whether the listeners serve TLS."""
        return bool(self.cert_file)

    @property
    def calls_secure(self) -> bool:
        """Whether the channels this process opens to other services use TLS."""
        return bool(self.cert_file or self.ca_file)


class _EnvOverFile(BaseSettings):
    """Settings read from the YAML file (passed as init kwargs) with the environment overriding them."""

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


class ServiceSettings(_EnvOverFile):
    """Settings every service has. Subclasses set ``section`` and their own ``env_prefix``."""

    section: ClassVar[str] = ""
    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="forbid")

    host: str = Field("0.0.0.0", description="Address the gRPC and HTTP servers bind to.")  # noqa: S104  container default; `briefxai up` binds 127.0.0.1
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
    features: dict[str, bool] = Field(
        default_factory=dict,
        description="Feature flags, name -> on/off (the top-level `features:` block); reloaded on SIGHUP.",
    )
    tls: TLSSettings = Field(
        default_factory=lambda: TLSSettings.model_validate({}),
        description="TLS of the gRPC and HTTP ports and of calls to other services (restart to change).",
    )
    service_token: str = Field(
        "",
        description="Shared secret between the gateway and the workers: a worker with one refuses calls "
        "(health and reflection aside) without it in x-briefxai-service-token; the gateway sends it.",
    )
    reflection_enabled: bool = Field(True, description="Serve gRPC server reflection (v1 and v1alpha).")

    @field_validator("features")
    @classmethod
    def _flag_names(cls, flags: dict[str, bool]) -> dict[str, bool]:
        bad = [name for name in flags if not FLAG_NAME.match(name)]
        if bad:
            raise ValueError(
                f"feature flag names must match {FLAG_NAME.pattern}: {', '.join(map(repr, bad))}"
            )
        return flags

    @field_validator("grpc_port", "http_port", check_fields=False)
    @classmethod
    def _port_in_range(cls, port: int) -> int:
        # Declared as a validator (not only Field bounds) so subclasses that change a default keep it.
        if not 0 <= port <= 65535:
            raise ValueError("must be a port number in 0..65535")
        return port

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


class _SectionTLS(_EnvOverFile):
    """Only the ``tls`` key of a section, read the way the service reads it (see :func:`section_tls`)."""

    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="ignore")

    tls: TLSSettings = Field(default_factory=lambda: TLSSettings.model_validate({}))


def section_tls(section: str, config_path: str | Path | None = None) -> TLSSettings:
    """``section``'s TLS settings (its ``tls:`` key in the config file, ``BRIEFXAI_<SECTION>_TLS__*`` over
    it) without importing the service: for the health check and the supervisor's probes."""
    values = {key: value for key, value in read_section(section, config_path).items() if key == "tls"}
    try:
        return _SectionTLS(_env_prefix=f"BRIEFXAI_{section.upper()}_", **values).tls  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(section, exc)) from exc


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


class RetryPoliciesBlock(_Block):
    """The top-level ``retry_policies:`` block: an entry per operation, each key optional."""

    llm_provider: RetryPolicySettings | None = None
    embedding: RetryPolicySettings | None = None
    facets: RetryPolicySettings | None = None
    clustering: RetryPolicySettings | None = None
    store: RetryPolicySettings | None = None
    embedding_remote: RetryPolicySettings | None = None


class CircuitBreakersBlock(_Block):
    """The top-level ``circuit_breakers:`` block: an entry per breaker, each key optional."""

    embedding: BreakerSettings | None = None
    facets: BreakerSettings | None = None
    clustering: BreakerSettings | None = None
    llm_provider: BreakerSettings | None = None
    embedding_remote: BreakerSettings | None = None


def _entries_for(block: BaseModel, names: tuple[str, ...]) -> dict[str, Any]:
    """The keys set in the block's entries ``names`` (not the entries' defaults: a service's own default
    stands where the block says nothing)."""
    entries: dict[str, Any] = {}
    for name in names:
        entry = getattr(block, name)
        if isinstance(entry, BaseModel) and entry.model_fields_set:
            entries[name] = entry.model_dump(include=entry.model_fields_set)
    return entries


def _read_block(name: str, model: type[BaseModel], config_path: str | Path | None) -> BaseModel:
    try:
        return model.model_validate(read_section(name, config_path))
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(name, exc, env=False)) from exc


def resilience_values(section: str, config_path: str | Path | None = None) -> dict[str, Any]:
    """``section``'s ``retry_policies`` and ``circuit_breakers`` as the top-level blocks set them."""
    values: dict[str, Any] = {}
    policies = _entries_for(
        _read_block(RETRY_POLICIES, RetryPoliciesBlock, config_path), RETRY_POLICY_USERS.get(section, ())
    )
    breakers = _entries_for(
        _read_block(CIRCUIT_BREAKERS, CircuitBreakersBlock, config_path), BREAKER_USERS.get(section, ())
    )
    if policies:
        values[RETRY_POLICIES] = policies
    if breakers:
        values[CIRCUIT_BREAKERS] = breakers
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


def read_features(config_path: str | Path | None = None) -> dict[str, Any]:
    """The file's top-level ``features:`` mapping ({} when absent); its values are validated with the
    service's settings (each must be true or false)."""
    return read_section(FEATURES, config_path)


def effective_section(section: str, config_path: str | Path | None = None) -> dict[str, Any]:
    """``section``'s values as a service loads them: the monitoring block's, the top-level feature
    flags, retry policies and circuit breakers, then the section's own."""
    base = read_monitoring(config_path).section_values(section)
    features = read_features(config_path)
    if features:
        base[FEATURES] = features
    base.update(resilience_values(section, config_path))
    return _merged(base, read_section(section, config_path))


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
