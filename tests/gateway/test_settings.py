"""The gateway's settings: defaults, YAML section, env overrides (nested keys with __)."""

from __future__ import annotations

from pathlib import Path

import pytest

from briefxai_common.config import ConfigError
from briefxai_gateway.models import EmbedTextMode
from briefxai_gateway.settings import GatewaySettings


def test_defaults() -> None:
    settings = GatewaySettings.load()
    assert (settings.grpc_port, settings.http_port) == (50051, 9091)
    assert settings.store_url == "sqlite:///./briefxai-data/gateway.db"
    assert settings.embedding_address == "localhost:50052"
    assert settings.facets_address == "localhost:50053"
    assert settings.clustering_address == "localhost:50054"
    assert settings.clustering_deadline_seconds > settings.embedding_deadline_seconds
    assert settings.max_conversations_per_analysis == 1_000_000
    assert settings.defaults.embed_token_budget == 64
    assert settings.defaults.embed_text is EmbedTextMode.CONVERSATION


def test_yaml_then_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "briefxai.yaml"
    config.write_text(
        "gateway:\n"
        "  batch_size: 128\n"
        "  circuit_breakers:\n"
        "    facets:\n"
        "      failure_threshold: 9\n"
        "      open_timeout_ms: 2000\n"
        "  defaults:\n"
        "    embed_text: first_user_message\n"
    )
    monkeypatch.setenv("BRIEFXAI_GATEWAY_CIRCUIT_BREAKERS__FACETS__FAILURE_THRESHOLD", "3")
    monkeypatch.setenv("BRIEFXAI_GATEWAY_STORE_URL", "postgresql+psycopg://db/briefxai")
    settings = GatewaySettings.load(config)
    assert settings.batch_size == 128
    facets = settings.circuit_breakers.facets
    assert (facets.failure_threshold, facets.open_timeout_ms) == (3, 2000)
    assert settings.circuit_breakers.embedding.failure_threshold == 5
    assert settings.store_url == "postgresql+psycopg://db/briefxai"
    assert settings.defaults.embed_text is EmbedTextMode.FIRST_USER_MESSAGE


def test_invalid_values_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"gateway\.batch_size"):
        GatewaySettings.load(batch_size=0)
    with pytest.raises(ConfigError, match=r"defaults\.k"):
        GatewaySettings.load(defaults={"k": 1})
    with pytest.raises(ConfigError):
        GatewaySettings.load(no_such_key=1)
