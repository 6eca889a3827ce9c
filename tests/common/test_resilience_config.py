"""The top-level ``retry_policies:`` and ``circuit_breakers:`` blocks reach the services that use them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from briefxai_clustering.settings import ClusteringSettings
from briefxai_common.config import ConfigError, effective_section
from briefxai_embedding.settings import EmbeddingSettings
from briefxai_facets.settings import FacetsSettings
from briefxai_gateway.settings import GatewaySettings

CONFIG = """
retry_policies:
  llm_provider: {max_attempts: 7, initial_delay_ms: 250}
  embedding: {max_attempts: 6}
  store: {max_delay_ms: 300}
  embedding_remote: {jitter: false}
circuit_breakers:
  facets: {failure_threshold: 2, open_timeout_ms: 1000}
  llm_provider: {half_open_max_calls: 3}
  embedding_remote: {success_threshold: 2}
gateway:
  circuit_breakers:
    facets: {failure_threshold: 4}
facets:
  providers: [openai, heuristic]
  openai: {max_attempts: 2}
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [n for n in os.environ if n.startswith("BRIEFXAI_")]:
        monkeypatch.delenv(name)
    path = tmp_path / "briefxai.yaml"
    path.write_text(CONFIG)
    return path


def test_each_service_gets_the_entries_it_uses(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIEFXAI_GATEWAY_RETRY_POLICIES__EMBEDDING__MAX_ATTEMPTS", "9")
    gateway = GatewaySettings.load(config)
    # the block, the env over it; unset keys keep the policy's defaults
    assert (
        gateway.retry_policies.embedding.max_attempts,
        gateway.retry_policies.embedding.initial_delay_ms,
    ) == (
        9,
        200.0,
    )
    assert gateway.retry_policies.facets.max_attempts == 4
    assert (gateway.retry_policies.store.max_attempts, gateway.retry_policies.store.max_delay_ms) == (
        3,
        300.0,
    )
    # the section's own key wins over the block, per key
    facets_breaker = gateway.circuit_breakers.facets
    assert (facets_breaker.failure_threshold, facets_breaker.open_timeout_ms) == (4, 1000.0)
    assert gateway.circuit_breakers.embedding.failure_threshold == 5

    facets = FacetsSettings.load(config)
    assert facets.retry_policies.llm_provider.max_attempts == 7
    policy = facets.openai.retry_policy(facets.retry_policies.llm_provider)
    assert (policy.max_attempts, policy.initial_delay, policy.max_delay) == (
        2,
        0.25,
        60.0,
    )  # openai overrides
    assert facets.circuit_breakers.llm_provider.half_open_max_calls == 3

    clustering = ClusteringSettings.load(config)
    assert clustering.retry_policies.llm_provider.max_attempts == 7
    assert clustering.circuit_breakers.llm_provider.half_open_max_calls == 3

    embedding = EmbeddingSettings.load(config)
    assert embedding.retry_policies.embedding_remote.jitter is False
    assert embedding.circuit_breakers.embedding_remote.success_threshold == 2
    assert set(effective_section("embedding", config)["retry_policies"]) == {"embedding_remote"}


@pytest.mark.parametrize(
    ("block", "key"),
    [
        ("retry_policies:\n  nope: {max_attempts: 2}\n", "retry_policies.nope"),
        ("retry_policies:\n  facets: {max_attempts: 0}\n", "retry_policies.facets.max_attempts"),
        (
            "circuit_breakers:\n  facets: {reset_timeout_seconds: 3}\n",
            "circuit_breakers.facets.reset_timeout_seconds",
        ),
    ],
)
def test_unknown_names_and_bad_values_name_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: str, key: str
) -> None:
    monkeypatch.delenv("BRIEFXAI_CONFIG", raising=False)
    path = tmp_path / "bad.yaml"
    path.write_text(block)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        GatewaySettings.load(path)
