"""The facets service's metrics over real sockets: LLM requests against the scripted OpenAI server,
failovers, failed values by reason, and the pre-initialised series."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

import grpc
import pytest
from prometheus_client import REGISTRY

from briefxai.common.v1 import common_pb2
from briefxai.facets.v1 import facets_pb2, facets_pb2_grpc
from briefxai_common.bootstrap import RunningService, start_service
from briefxai_facets.server import build_service
from briefxai_facets.settings import FacetsSettings
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.http import http_get
from tests.support.promtool import check_metrics

from .test_service import valid_reply

MODEL = "metrics-model"
LLM = f"openai:{MODEL}"
LLM_FACETS = 5  # request, task, language, sentiment, concerning (the counts are not asked of the LLM)
CONVERSATION = common_pb2.Conversation(
    id="refund",
    messages=[
        common_pb2.Message(role=common_pb2.ROLE_USER, content="I was charged twice, please refund me."),
        common_pb2.Message(role=common_pb2.ROLE_ASSISTANT, content="Done, the second charge is refunded."),
    ],
)


def value(name: str, **labels: str) -> float:
    found = REGISTRY.get_sample_value(name, labels)
    return 0.0 if found is None else found


def llm(outcome: str) -> float:
    return value("briefxai_llm_requests_total", provider="openai", model=MODEL, outcome=outcome)


def failed(provider: str, reason: str) -> float:
    return value("briefxai_facets_failed_values_total", provider=provider, reason=reason)


def failovers(outcome: str = "ok") -> float:
    return value(
        "briefxai_failovers_total", service="facets", outcome=outcome, **{"from": LLM, "to": "heuristic"}
    )


def llm_errors() -> float:
    return value("briefxai_errors_total", service="facets", kind="llm")


class Facets:
    def __init__(self, running: RunningService, fake: FakeOpenAI) -> None:
        self.running, self.fake = running, fake
        self.channel = grpc.aio.insecure_channel(running.address)
        self.stub = cast(
            "facets_pb2_grpc.FacetsServiceAsyncStub", facets_pb2_grpc.FacetsServiceStub(self.channel)
        )

    async def extract(self, *facets: str) -> facets_pb2.ExtractFacetsResponse:
        request = facets_pb2.ExtractFacetsRequest(conversations=[CONVERSATION], facets=list(facets))
        return await self.stub.ExtractFacets(request)

    async def metrics_text(self) -> str:
        status, body = await asyncio.to_thread(http_get, self.running.http_port, "/metrics")
        assert status == 200
        return body.decode()


@pytest.fixture
async def facets() -> AsyncIterator[Facets]:
    async with FakeOpenAI(model=MODEL, chat_default=valid_reply) as fake:
        settings = FacetsSettings.load(
            host="127.0.0.1",
            grpc_port=0,
            http_port=0,
            grace_period_seconds=0,
            providers=["openai", "heuristic"],
            openai={
                "base_url": fake.base_url,
                "model": MODEL,
                "api_key_env": "BRIEFXAI_TEST_UNSET_KEY",
                "timeout_seconds": 2.0,
                "max_attempts": 2,
                "backoff_initial_seconds": 0.0,
                "backoff_max_seconds": 0.01,
                "cost_per_1k_input_tokens": 2.0,
                "cost_per_1k_output_tokens": 4.0,
            },
            custom_facets=[{"name": "product", "question": "Which product?", "type": "text"}],
        )
        running = await start_service(build_service(settings))
        handle = Facets(running, fake)
        # One answered request settles the response_format negotiation (tests/facets/test_response_format.py),
        # so that the faults the tests script meet the retry policy, not a format probe.
        await handle.extract("task")
        fake.reset()
        yield handle
        await handle.channel.close(None)
        await running.stop(grace=0)


async def test_llm_and_chain_series_exist_at_zero_and_pass_promtool(facets: Facets) -> None:
    text = await facets.metrics_text()
    expected = [
        'briefxai_failovers_total{from="openai:metrics-model",outcome="ok",service="facets",to="heuristic"}',
        'briefxai_failovers_total{from="openai:metrics-model",outcome="failed",service="facets",to="heuristic"}',
        'briefxai_circuit_breaker_state{breaker="openai",service="facets"}',
        'briefxai_circuit_breaker_transitions_total{breaker="openai",from="closed",service="facets",to="open"}',
        'briefxai_retries_total{dependency="openai",service="facets"}',
        'briefxai_retries_denied_total{dependency="openai",reason="budget",service="facets"}',
        'briefxai_facets_failed_values_total{provider="openai:metrics-model",reason="invalid_answer"}',
        'briefxai_facets_failed_values_total{provider="openai:metrics-model",reason="timeout"}',
        'briefxai_facets_failed_values_total{provider="heuristic",reason="unsupported_facet"}',
        'briefxai_llm_requests_total{model="metrics-model",outcome="rate_limited",provider="openai"}',
        'briefxai_llm_requests_total{model="metrics-model",outcome="ok",provider="openai"}',
        'briefxai_llm_tokens_total{direction="input",model="metrics-model",provider="openai"}',
        'briefxai_llm_estimated_cost_total{model="metrics-model",provider="openai"}',
        'briefxai_llm_request_duration_seconds_count{model="metrics-model",provider="openai"}',
        'briefxai_errors_total{kind="llm",service="facets"}',
        'briefxai_operations_total{operation="ExtractFacets",service="facets",status="OK"}',
        'briefxai_facets_values_total{status="failed"}',
    ]
    for series in expected:
        assert series in text, series
    await asyncio.to_thread(check_metrics, text)


async def test_llm_requests_tokens_and_cost(facets: Facets) -> None:
    ok, tokens_in, tokens_out = (
        llm("ok"),
        value("briefxai_llm_tokens_total", provider="openai", model=MODEL, direction="input"),
        value("briefxai_llm_tokens_total", provider="openai", model=MODEL, direction="output"),
    )
    cost = value("briefxai_llm_estimated_cost_total", provider="openai", model=MODEL)
    latency = value("briefxai_llm_request_duration_seconds_count", provider="openai", model=MODEL)
    values_ok = value("briefxai_facets_values_total", status="ok")

    reply = await facets.extract("request", "task", "language", "sentiment", "concerning", "turns")
    assert all(not v.failed and v.provider in (LLM, "heuristic") for v in reply.results[0].values)

    assert llm("ok") == ok + 1
    assert value("briefxai_llm_request_duration_seconds_count", provider="openai", model=MODEL) == latency + 1
    used_in = (
        value("briefxai_llm_tokens_total", provider="openai", model=MODEL, direction="input") - tokens_in
    )
    used_out = (
        value("briefxai_llm_tokens_total", provider="openai", model=MODEL, direction="output") - tokens_out
    )
    assert used_in > 0 and used_out > 0
    spent = value("briefxai_llm_estimated_cost_total", provider="openai", model=MODEL) - cost
    assert spent == pytest.approx((used_in * 2.0 + used_out * 4.0) / 1000)
    assert value("briefxai_facets_values_total", status="ok") == values_ok + 6


async def test_llm_failures_fail_over_to_the_heuristic(facets: Facets) -> None:
    errors, server_errors, handed = llm_errors(), llm("server_error"), failovers()
    by_reason = failed(LLM, "server_error")
    facets.fake.script_chat(Behaviour.server_error(503), Behaviour.server_error(503))  # both attempts

    reply = await facets.extract("request", "task", "language", "sentiment", "concerning")
    assert all(v.provider == "heuristic" and not v.failed for v in reply.results[0].values)

    assert llm("server_error") == server_errors + 2
    assert llm_errors() == errors + 2
    assert failed(LLM, "server_error") == by_reason + LLM_FACETS
    assert failovers() == handed + LLM_FACETS


async def test_invalid_answers_are_failed_values_by_reason(facets: Facets) -> None:
    invalid, ok, errors = failed(LLM, "invalid_answer"), llm("ok"), llm_errors()
    facets.fake.script_chat(Behaviour.malformed_json(), Behaviour.malformed_json())

    await facets.extract("request", "task", "language", "sentiment", "concerning")

    assert failed(LLM, "invalid_answer") == invalid + LLM_FACETS
    assert llm("ok") == ok + 2  # the HTTP requests succeeded; their content was unusable
    assert llm_errors() == errors


async def test_a_facet_nobody_answers_is_counted_failed(facets: Facets) -> None:
    facets.fake.script_chat(Behaviour.server_error(500), Behaviour.server_error(500))
    unsupported, values_failed = (
        failed("heuristic", "unsupported_facet"),
        value("briefxai_facets_values_total", status="failed"),
    )

    reply = await facets.extract("product")

    assert reply.results[0].values[0].failed
    assert failed("heuristic", "unsupported_facet") == unsupported + 1
    assert value("briefxai_facets_values_total", status="failed") == values_failed + 1
