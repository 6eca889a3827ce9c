"""Settings: YAML file, env overrides winning over it, and errors that name the key at fault."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
from pydantic_settings import SettingsConfigDict

from briefxai_common.config import ConfigError, ServiceSettings


class DemoSettings(ServiceSettings):
    section: ClassVar[str] = "demo"
    model_config = SettingsConfigDict(env_prefix="BRIEFXAI_DEMO_", env_nested_delimiter="__", extra="forbid")
    grpc_port: int = 50999
    batch_size: int = 8


def test_defaults_without_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRIEFXAI_CONFIG", raising=False)
    settings = DemoSettings.load()
    assert settings.grpc_port == 50999
    assert settings.batch_size == 8
    assert settings.log_format == "json"


def test_yaml_section_then_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "briefxai.yaml"
    config.write_text("demo:\n  grpc_port: 6000\n  batch_size: 16\nother:\n  grpc_port: 1\n")
    monkeypatch.setenv("BRIEFXAI_CONFIG", str(config))
    monkeypatch.setenv("BRIEFXAI_DEMO_BATCH_SIZE", "32")
    settings = DemoSettings.load()
    assert settings.grpc_port == 6000
    assert settings.batch_size == 32


def test_invalid_value_names_its_key(tmp_path: Path) -> None:
    config = tmp_path / "briefxai.yaml"
    config.write_text("demo:\n  grpc_port: 70000\n")
    with pytest.raises(ConfigError, match=r"demo\.grpc_port"):
        DemoSettings.load(config)


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    config = tmp_path / "briefxai.yaml"
    config.write_text("demo:\n  grpc_prot: 1\n")
    with pytest.raises(ConfigError, match=r"demo\.grpc_prot"):
        DemoSettings.load(config)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        DemoSettings.load(tmp_path / "missing.yaml")


class FacetsLike(ServiceSettings):
    """The ``facets`` section's common keys (the monitoring block's port offset depends on the section)."""

    section: ClassVar[str] = "facets"
    model_config = SettingsConfigDict(
        env_prefix="BRIEFXAI_FACETS_", env_nested_delimiter="__", extra="forbid"
    )


MONITORING = """
monitoring:
  enabled: true
  prometheus:
    enabled: false
    port: 9500
  opentelemetry:
    enabled: true
    endpoint: http://otel:4317
  performance:
    enable_profiling: true
    track_memory: true
    track_cpu: false
"""


def test_monitoring_block_maps_onto_every_service(tmp_path: Path) -> None:
    config = tmp_path / "briefxai.yaml"
    config.write_text(MONITORING)
    demo = DemoSettings.load(config)
    assert (demo.metrics_enabled, demo.http_port, demo.otlp_endpoint) == (False, 9500, "http://otel:4317")
    assert demo.performance.model_dump() == {
        "enable_profiling": True,
        "track_memory": True,
        "track_cpu": False,
    }
    facets = FacetsLike.load(config)
    assert facets.http_port == 9502  # gateway 9500, embedding 9501, facets 9502, clustering 9503
    assert facets.otlp_endpoint == "http://otel:4317"


def test_a_section_and_the_environment_win_over_the_monitoring_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "briefxai.yaml"
    config.write_text(MONITORING + "demo:\n  http_port: 7000\n  performance:\n    track_memory: false\n")
    monkeypatch.setenv("BRIEFXAI_DEMO_OTLP_ENDPOINT", "http://other:4317")
    settings = DemoSettings.load(config)
    assert settings.http_port == 7000
    assert settings.otlp_endpoint == "http://other:4317"
    # Nested keys merge: the section's track_memory, the block's enable_profiling and track_cpu.
    assert settings.performance.model_dump() == {
        "enable_profiling": True,
        "track_memory": False,
        "track_cpu": False,
    }


def test_monitoring_disabled_turns_everything_off(tmp_path: Path) -> None:
    config = tmp_path / "briefxai.yaml"
    config.write_text("monitoring:\n  enabled: false\n  opentelemetry:\n    endpoint: http://otel:4317\n")
    settings = DemoSettings.load(config)
    assert (settings.metrics_enabled, settings.otlp_endpoint) == (False, "")
    assert not any(settings.performance.model_dump().values())


def test_opentelemetry_disabled_empties_the_endpoint(tmp_path: Path) -> None:
    config = tmp_path / "briefxai.yaml"
    config.write_text("monitoring:\n  opentelemetry:\n    enabled: false\n    endpoint: http://otel:4317\n")
    assert DemoSettings.load(config, otlp_endpoint="http://mine:4317").otlp_endpoint == "http://mine:4317"
    assert DemoSettings.load(config).otlp_endpoint == ""


def test_without_a_monitoring_block_the_defaults_stand(tmp_path: Path) -> None:
    config = tmp_path / "briefxai.yaml"
    config.write_text("demo:\n  batch_size: 4\n")
    settings = DemoSettings.load(config)
    assert settings.metrics_enabled is True and settings.otlp_endpoint == ""
    assert settings.performance.model_dump() == {
        "enable_profiling": False,
        "track_memory": True,
        "track_cpu": True,
    }


@pytest.mark.parametrize(
    ("block", "key"),
    [
        ("monitoring:\n  prometheus:\n    prot: 9090\n", r"monitoring\.prometheus\.prot"),
        ("monitoring:\n  tracing: {}\n", r"monitoring\.tracing"),
        ("monitoring:\n  performance:\n    track_disk: true\n", r"monitoring\.performance\.track_disk"),
        ("monitoring:\n  prometheus:\n    port: 70000\n", r"monitoring\.prometheus\.port"),
    ],
)
def test_unknown_or_invalid_monitoring_keys_are_errors(tmp_path: Path, block: str, key: str) -> None:
    config = tmp_path / "briefxai.yaml"
    config.write_text(block)
    with pytest.raises(ConfigError, match=key):
        DemoSettings.load(config)


def test_log_file_settings(tmp_path: Path) -> None:
    config = tmp_path / "briefxai.yaml"
    config.write_text("demo:\n  log_file: /var/log/briefxai/demo.log\n  log_max_mb: 20\n  log_backups: 3\n")
    settings = DemoSettings.load(config)
    assert (settings.log_file, settings.log_max_mb, settings.log_backups) == (
        "/var/log/briefxai/demo.log",
        20,
        3,
    )
    config.write_text("demo:\n  log_max_mb: 0\n")
    with pytest.raises(ConfigError, match=r"demo\.log_max_mb"):
        DemoSettings.load(config)
