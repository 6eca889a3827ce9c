"""Facets settings: defaults, YAML section, env overrides, and configuration errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from briefxai_common.config import ConfigError
from briefxai_facets.server import build_service
from briefxai_facets.settings import FacetsSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRIEFXAI_CONFIG", raising=False)


def test_defaults() -> None:
    settings = FacetsSettings.load()
    assert (settings.grpc_port, settings.http_port) == (50053, 9093)
    assert settings.providers == ["heuristic"]
    assert settings.openai.api_key_env == "OPENAI_API_KEY"
    assert (settings.openai.concurrency, settings.openai.max_attempts) == (16, None)
    # the reference's llm_provider policy unless the provider overrides it
    policy = settings.openai.retry_policy(settings.retry_policies.llm_provider)
    assert (
        policy.max_attempts,
        policy.initial_delay,
        policy.max_delay,
        policy.multiplier,
        policy.jitter,
    ) == (
        5,
        1.0,
        60.0,
        1.5,
        True,
    )
    breaker = settings.circuit_breakers.llm_provider
    assert (breaker.failure_threshold, breaker.success_threshold, breaker.half_open_max_calls) == (5, 1, 1)
    assert settings.max_conversations_per_request == 1000
    assert settings.custom_facets == []


def test_yaml_then_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "briefxai.yaml"
    config.write_text(
        """
facets:
  providers: [openai, heuristic]
  openai:
    base_url: http://localhost:11434/v1
    model: llama3.1
  custom_facets:
    - {name: urgency, question: "How urgent is the request?", type: number, min: 1, max: 5}
    - {name: channel, question: "Which channel?", type: enum, choices: [email, chat, phone]}
"""
    )
    monkeypatch.setenv("BRIEFXAI_CONFIG", str(config))
    monkeypatch.setenv("BRIEFXAI_FACETS_OPENAI__MODEL", "qwen2.5")
    monkeypatch.setenv("BRIEFXAI_FACETS_MAX_CONVERSATIONS_PER_REQUEST", "50")
    settings = FacetsSettings.load()
    assert settings.providers == ["openai", "heuristic"]
    assert (settings.openai.base_url, settings.openai.model) == ("http://localhost:11434/v1", "qwen2.5")
    assert settings.max_conversations_per_request == 50
    assert [d.name for d in settings.custom_definitions()] == ["urgency", "channel"]
    assert settings.custom_definitions()[1].choices == ("email", "chat", "phone")


def test_more_llms_by_name() -> None:
    settings = FacetsSettings.load(
        providers=["openai", "local", "heuristic"], llms={"local": {"base_url": "http://x/v1", "model": "m"}}
    )
    assert settings.llm_settings("local").model == "m"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"providers": []}, "at least one provider"),
        ({"providers": ["heuristic", "heuristic"]}, "repeat"),
        ({"providers": ["claude"]}, "unknown provider 'claude'"),
        ({"custom_facets": [{"name": "task", "question": "q", "type": "text"}]}, "built-in"),
        ({"custom_facets": [{"name": "Bad Name", "question": "q", "type": "text"}]}, "must match"),
        ({"custom_facets": [{"name": "n", "question": "q", "type": "number"}]}, "need min and max"),
        (
            {"custom_facets": [{"name": "n", "question": "q", "type": "number", "min": 5, "max": 1}]},
            "min < max",
        ),
        (
            {"custom_facets": [{"name": "e", "question": "q", "type": "enum", "choices": ["a"]}]},
            "two choices",
        ),
        (
            {"custom_facets": [{"name": "t", "question": "q", "type": "text", "choices": ["a", "b"]}]},
            "only for enum",
        ),
        (
            {
                "custom_facets": [
                    {"name": "x", "question": "q", "type": "text"},
                    {"name": "x", "question": "r", "type": "text"},
                ]
            },
            "unique",
        ),
        ({"heuristic": {"languages": ["en", "zz"]}}, "zz"),
        ({"openai": {"concurrency": 0}}, "facets.openai.concurrency"),
        ({"openai": {"surprise": 1}}, "surprise"),
    ],
)
def test_invalid_configuration(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_service(FacetsSettings.load(**overrides))
