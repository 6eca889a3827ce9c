"""The facets chain [LLM A, LLM B, heuristic] over real sockets: each LLM provider behind its own circuit
breaker, failovers counted with their outcome, health from the breakers (passive) and the GET /models
probe (active)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from briefxai.facets.v1 import facets_pb2
from tests.facets.test_service import REFUND, StartFn, valid_reply, values_by_facet
from tests.facets.test_service import start as start  # the fixture
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.http import get_json
from tests.support.ports import free_port

LLM_FACETS = 5  # request, task, language, sentiment, concerning; the counts come from the heuristic


def failovers(source: str, target: str, outcome: str) -> float:
    labels = {"service": "facets", "from": source, "to": target, "outcome": outcome}
    return REGISTRY.get_sample_value("briefxai_failovers_total", labels) or 0.0


def llm(fake: FakeOpenAI, model: str) -> dict[str, Any]:
    return {
        "base_url": fake.base_url,
        "model": model,
        "api_key_env": "BRIEFXAI_TEST_UNSET_KEY",
        "timeout_seconds": 2.0,
        "max_attempts": 2,
        "backoff_initial_seconds": 0.0,
        "backoff_max_seconds": 0.01,
    }


@pytest.fixture
async def second_llm() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


async def health(port: int) -> dict[str, Any]:
    status, body = await get_json(port, "/health")
    assert status == 200
    return body


async def test_llm_a_fails_over_to_llm_b_then_to_the_heuristic(
    start: StartFn, fake_openai: FakeOpenAI, second_llm: FakeOpenAI
) -> None:
    a, b = "openai:model-a", "openai:model-b"
    fake_openai.chat_default = valid_reply
    second_llm.chat_default = valid_reply
    stub = await start(
        providers=["a", "b", "heuristic"],
        llms={"a": llm(fake_openai, "model-a"), "b": llm(second_llm, "model-b")},
        circuit_breakers={
            "llm_provider": {"failure_threshold": 2, "open_timeout_ms": 600_000, "probe_interval_ms": 600_000}
        },
    )
    a_to_b, b_to_heuristic = failovers(a, b, "ok"), failovers(b, "heuristic", "ok")

    # LLM A answers 500 to both attempts: LLM B gives the values
    fake_openai.script_chat(Behaviour.server_error(500), Behaviour.server_error(500))
    reply = await stub.ExtractFacets(facets_pb2.ExtractFacetsRequest(conversations=[REFUND]))
    values = values_by_facet(reply.results[0])
    assert {values[name].provider for name in ("request", "task", "language", "sentiment", "concerning")} == {
        b
    }
    assert values["task"].text == "account_billing"
    assert failovers(a, b, "ok") == a_to_b + LLM_FACETS
    # two failed requests in a row opened A's breaker: A is no longer called at all
    calls_to_a = len(fake_openai.requests_to("chat"))
    assert calls_to_a == 2
    reply = await stub.ExtractFacets(facets_pb2.ExtractFacetsRequest(conversations=[REFUND]))
    assert values_by_facet(reply.results[0])["task"].provider == b
    assert len(fake_openai.requests_to("chat")) == calls_to_a
    assert failovers(a, b, "ok") == a_to_b + 2 * LLM_FACETS

    # LLM B fails too: the heuristic answers, and that failover is counted as well
    second_llm.script_chat(Behaviour.server_error(503), Behaviour.server_error(503))
    reply = await stub.ExtractFacets(facets_pb2.ExtractFacetsRequest(conversations=[REFUND]))
    values = values_by_facet(reply.results[0])
    assert values["task"].provider == "heuristic" and not values["task"].failed
    assert failovers(b, "heuristic", "ok") == b_to_heuristic + LLM_FACETS
    assert failovers(a, b, "failed") >= LLM_FACETS  # A's values that B could not give either


async def test_an_open_breaker_shows_in_health_and_the_probe_closes_it(
    start: StartFn, fake_openai: FakeOpenAI
) -> None:
    """The chat endpoint fails (500) while GET /models answers: the probe counts as a successful trial,
    so the breaker closes without waiting for traffic or for the open timeout."""
    fake_openai.chat_default = valid_reply
    http_port = free_port()
    stub = await start(
        providers=["openai", "heuristic"],
        openai={**llm(fake_openai, "model-p"), "max_attempts": 1},
        circuit_breakers={
            "llm_provider": {"failure_threshold": 1, "open_timeout_ms": 600_000, "probe_interval_ms": 1000}
        },
        http_port=http_port,
    )
    fake_openai.script_chat(Behaviour.server_error(502))
    reply = await stub.ExtractFacets(facets_pb2.ExtractFacetsRequest(conversations=[REFUND]))
    assert values_by_facet(reply.results[0])["task"].provider == "heuristic"
    labels = {"service": "facets", "breaker": "openai"}
    assert REGISTRY.get_sample_value("briefxai_circuit_breaker_state", labels) == 1.0
    body = await health(http_port)
    assert body["status"] == "degraded" and body["circuit_breakers"] == {"openai": "open"}
    assert body["providers"]["openai:model-p"] == "unavailable"
    assert "circuit breaker openai open" in body["reasons"]
    for _ in range(100):
        if REGISTRY.get_sample_value("briefxai_circuit_breaker_state", labels) == 0.0:
            break
        await asyncio.sleep(0.05)
    assert REGISTRY.get_sample_value("briefxai_circuit_breaker_state", labels) == 0.0
    reply = await stub.ExtractFacets(facets_pb2.ExtractFacetsRequest(conversations=[REFUND]))
    assert values_by_facet(reply.results[0])["task"].provider == "openai:model-p"
    assert (await health(http_port))["circuit_breakers"] == {"openai": "closed"}
