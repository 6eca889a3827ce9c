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
