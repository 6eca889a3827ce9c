"""The facets service over real sockets: started with the bootstrap, called through generated stubs.

LLM scenarios use the scripted OpenAI-compatible server in tests/support/fake_openai.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias, cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from briefxai.common.v1 import common_pb2
from briefxai.facets.v1 import facets_pb2, facets_pb2_grpc
from briefxai_common.bootstrap import RunningService, start_service
from briefxai_facets.server import build_service
from briefxai_facets.servicer import SERVICE_NAME
from briefxai_facets.settings import FacetsSettings
from tests.support.errors import field_violations
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.http import http_get

USER, ASSISTANT = common_pb2.ROLE_USER, common_pb2.ROLE_ASSISTANT
MODEL = "test-model"
LLM = f"openai:{MODEL}"
CUSTOM = {"name": "product", "question": "Which product is the conversation about?", "type": "text"}

Stub: TypeAlias = "facets_pb2_grpc.FacetsServiceAsyncStub"  # the async stub type exists in the .pyi only
StartFn = Callable[..., Awaitable[Stub]]


def conv(conversation_id: str, *messages: tuple[common_pb2.Role, str]) -> common_pb2.Conversation:
    return common_pb2.Conversation(
        id=conversation_id, messages=[common_pb2.Message(role=r, content=c) for r, c in messages]
    )


REFUND = conv(
    "refund",
    (USER, "Hello! I was charged twice for my subscription and want a refund. Reach me at ann@example.com"),
    (ASSISTANT, "Sorry about that. I have refunded the second charge."),
    (USER, "Thank you, that is great!"),
)
SPANISH = conv("es", (USER, "Hola, la aplicación no funciona desde ayer y se cierra sola al abrirla."))
CODE = conv(
    "code", (USER, "Why does my Python function return None instead of the list?"), (ASSISTANT, "...")
)


def values_by_facet(result: facets_pb2.ConversationFacets) -> dict[str, common_pb2.FacetValue]:
    return {v.facet: v for v in result.values}


def valid_reply(request: dict[str, Any]) -> str:
    """A correct JSON answer for exactly the facets the request's json_schema asks for."""
    wanted = request["response_format"]["json_schema"]["schema"]["properties"]
    answers: dict[str, Any] = {
        "request": "The user asks for a refund of a double charge; contact ann@example.com.",
        "task": "account_billing",
        "language": "en",
        "sentiment": 0.25,
        "concerning": {"value": 2, "reason": "mentions a payment dispute"},
        "product": "subscription",
    }
    return json.dumps({name: answers[name] for name in wanted})


@pytest.fixture
async def start() -> AsyncIterator[StartFn]:
    """Starts facets services with settings overrides; each gets a stub; all stop after the test."""
    running: list[RunningService] = []
    channels: list[grpc.aio.Channel] = []

    async def _start(**overrides: Any) -> Stub:
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "grpc_port": 0,
            "http_port": 0,
            "grace_period_seconds": 0,
        }
        values.update(overrides)
        service = await start_service(build_service(FacetsSettings.load(**values)))
        running.append(service)
        channel = grpc.aio.insecure_channel(service.address)
        channels.append(channel)
        return cast(Stub, facets_pb2_grpc.FacetsServiceStub(channel))  # an aio channel gives the async stub

    yield _start
    for channel in channels:
        await channel.close(None)
    for service in running:
        await service.stop(grace=0)


def llm_settings(fake: FakeOpenAI, **overrides: Any) -> dict[str, Any]:
    openai = {
        "base_url": fake.base_url,
        "model": MODEL,
        "api_key_env": "BRIEFXAI_TEST_UNSET_KEY",
        "timeout_seconds": 2.0,
        "max_attempts": 3,
        "backoff_initial_seconds": 0.0,
        "backoff_max_seconds": 0.05,
    }
    openai.update(overrides)
    return {"providers": ["openai", "heuristic"], "openai": openai}


# ---- heuristic only ---------------------------------------------------------------------------------


async def test_heuristic_end_to_end(start: StartFn) -> None:
    stub = await start()
    reply = await stub.ExtractFacets(facets_pb2.ExtractFacetsRequest(conversations=[REFUND, SPANISH, CODE]))
    assert [r.conversation_id for r in reply.results] == ["refund", "es", "code"]
    names = ["request", "task", "language", "sentiment", "concerning", "turns", "user_turns", "tokens"]
    for result in reply.results:
        assert [v.facet for v in result.values] == names
        assert all(v.provider == "heuristic" and not v.failed for v in result.values)
    refund, spanish, code = (values_by_facet(r) for r in reply.results)
    assert refund["request"].text == "I was charged twice for my subscription and want a refund."
    assert refund["task"].text == "account_billing"
    assert refund["language"].text == "en"
    assert refund["sentiment"].WhichOneof("value") == "number"
    assert (refund["turns"].number, refund["user_turns"].number) == (3, 2)
    assert refund["concerning"].number == 1 and refund["concerning"].reason
    assert spanish["language"].text == "es"
    assert spanish["task"].text == "troubleshooting"
    assert code["task"].text == "coding"


async def test_requested_facets_only_in_request_order(start: StartFn) -> None:
    stub = await start()
    request = facets_pb2.ExtractFacetsRequest(conversations=[REFUND], facets=["turns", "language", "turns"])
    reply = await stub.ExtractFacets(request)
    assert [v.facet for v in reply.results[0].values] == ["turns", "language"]


async def test_list_facets_and_health(start: StartFn) -> None:
    stub = await start(custom_facets=[CUSTOM, {"name": "urgency", "question": "How urgent?", "type": "number",
                                               "min": 0, "max": 10}])  # fmt: skip
    reply = await stub.ListFacets(facets_pb2.ListFacetsRequest())
    assert list(reply.providers) == ["heuristic"]
    by_name = {f.name: f for f in reply.facets}
    assert list(by_name)[:8] == ["request", "task", "language", "sentiment", "concerning", "turns", "user_turns",
                                 "tokens"]  # fmt: skip
    assert by_name["task"].type == facets_pb2.FACET_TYPE_ENUM and "coding" in by_name["task"].choices
    assert (by_name["sentiment"].min, by_name["sentiment"].max) == (-1, 1)
    assert by_name["request"].builtin and not by_name["product"].builtin
    assert (by_name["urgency"].type, by_name["urgency"].max) == (facets_pb2.FACET_TYPE_NUMBER, 10)


async def test_list_facets_reports_the_servers_limits(start: StartFn) -> None:
    stub = await start(
        max_conversations_per_request=7, max_messages_per_conversation=9, max_chars_per_message=99
    )
    reply = await stub.ListFacets(facets_pb2.ListFacetsRequest())
    assert (
        reply.max_conversations_per_request,
        reply.max_messages_per_conversation,
        reply.max_chars_per_message,
    ) == (7, 9, 99)


async def test_custom_facet_without_llm_fails_clearly(start: StartFn) -> None:
    stub = await start(custom_facets=[CUSTOM])
    reply = await stub.ExtractFacets(facets_pb2.ExtractFacetsRequest(conversations=[REFUND]))
    product = values_by_facet(reply.results[0])["product"]
    assert product.failed and product.WhichOneof("value") is None
    assert "LLM provider" in product.error


@pytest.mark.parametrize(
    ("conversations", "facets", "expected"),
    [
        ([], [], [("conversations", "at least one conversation is required")]),
        ([conv("", (USER, "hi"))], [], [("conversations[0].id", "must be non-empty")]),
        ([REFUND, conv("b")], [], [("conversations[1].messages", "at least one message is required")]),
        (
            [REFUND, SPANISH, REFUND],
            [],
            [("conversations[2].id", "duplicate conversation id 'refund'")],
        ),
        ([REFUND], ["language", "mood"], [("facets[1]", "unknown facet 'mood'")]),
        (
            [conv("r", (common_pb2.ROLE_UNSPECIFIED, "x"))],
            [],
            [("conversations[0].messages[0].role", "must be set")],
        ),
        ([conv(f"c{i}", (USER, "hi")) for i in range(4)], [], [("conversations", "at most 3 conversations")]),
        # Empty text is refused here as by the gateway (the shared contract); it used to pass.
        (
            [conv("blank", (USER, "hi"), (ASSISTANT, "  "))],
            [],
            [("conversations[0].messages[1].content", "must be non-empty")],
        ),
        (
            [conv("long", (USER, "x" * 101))],
            [],
            [("conversations[0].messages[0].content", "at most 100 characters")],
        ),
        (
            [conv("", (USER, "hi")), conv("b")],
            ["nope"],
            [
                ("facets[0]", "unknown"),
                ("conversations[0].id", "empty"),
                ("conversations[1].messages", "at least"),
            ],
        ),
    ],
)
async def test_invalid_requests_and_the_service_keeps_serving(
    start: StartFn,
    conversations: list[common_pb2.Conversation],
    facets: list[str],
    expected: list[tuple[str, str]],
) -> None:
    stub = await start(max_conversations_per_request=3, max_chars_per_message=100)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ExtractFacets(facets_pb2.ExtractFacetsRequest(conversations=conversations, facets=facets))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = field_violations(caught.value)
    assert [field for field, _ in found] == [field for field, _ in expected]
    for (_, description), (_, fragment) in zip(found, expected, strict=True):
        assert fragment in description
    reply = await stub.ExtractFacets(
        facets_pb2.ExtractFacetsRequest(conversations=[SPANISH], facets=["language"])
    )
    assert reply.results[0].values[0].text == "es"


# ---- OpenAI-compatible provider -------------------------------------------------------------------------


async def test_llm_values_are_used_and_tagged(start: StartFn, fake_openai: FakeOpenAI) -> None:
    fake_openai.chat_default = valid_reply
    stub = await start(**llm_settings(fake_openai), custom_facets=[CUSTOM])
    listed = await stub.ListFacets(facets_pb2.ListFacetsRequest())
    assert list(listed.providers) == [LLM, "heuristic"]
    reply = await stub.ExtractFacets(facets_pb2.ExtractFacetsRequest(conversations=[REFUND]))
    values = values_by_facet(reply.results[0])
    for name in ("request", "task", "language", "sentiment", "concerning", "product"):
        assert values[name].provider == LLM and not values[name].failed
    # counts are never asked of the LLM
    for name in ("turns", "user_turns", "tokens"):
        assert values[name].provider == "heuristic"
    assert values["request"].text == "The user asks for a refund of a double charge; contact [EMAIL]."
    assert values["concerning"].number == 2 and values["concerning"].reason == "mentions a payment dispute"
    assert values["product"].text == "subscription"
    [request] = fake_openai.requests_to("chat")
    body = request.body
    assert body["model"] == MODEL
    schema = body["response_format"]["json_schema"]["schema"]
    assert set(schema["required"]) == {"request", "task", "language", "sentiment", "concerning", "product"}
    assert schema["properties"]["task"]["properties"]["value"]["enum"][0] == "coding"
    assert schema["properties"]["sentiment"]["minimum"] == -1
    assert "charged twice" in body["messages"][1]["content"]


async def test_malformed_then_valid_is_retried_and_used(start: StartFn, fake_openai: FakeOpenAI) -> None:
    fake_openai.chat_default = valid_reply
    fake_openai.script_chat(Behaviour.malformed_json())
    stub = await start(**llm_settings(fake_openai))
    reply = await stub.ExtractFacets(facets_pb2.ExtractFacetsRequest(conversations=[REFUND]))
    values = values_by_facet(reply.results[0])
    assert values["task"].provider == LLM and values["task"].text == "account_billing"
    assert len(fake_openai.requests_to("chat")) == 2


async def test_invalid_values_are_asked_again_alone(start: StartFn, fake_openai: FakeOpenAI) -> None:
    fake_openai.chat_default = valid_reply
    bad = {"request": "A refund.", "task": "banking", "language": "english", "sentiment": 1.7,
           "concerning": {"value": 1, "reason": "none"}}  # fmt: skip
    fake_openai.script_chat(Behaviour.reply(json.dumps(bad)))
    stub = await start(**llm_settings(fake_openai))
    reply = await stub.ExtractFacets(facets_pb2.ExtractFacetsRequest(conversations=[REFUND]))
    values = values_by_facet(reply.results[0])
    assert values["request"].text == "A refund."
    assert (values["task"].text, values["language"].text, values["sentiment"].number) == (
        "account_billing",
        "en",
        0.25,
    )
    assert all(values[n].provider == LLM for n in ("request", "task", "language", "sentiment", "concerning"))
    _, second = fake_openai.requests_to("chat")
    assert set(second.body["response_format"]["json_schema"]["schema"]["required"]) == {
        "task",
        "language",
        "sentiment",
    }


async def test_always_malformed_falls_back_to_heuristic(start: StartFn, fake_openai: FakeOpenAI) -> None:
    fake_openai.chat_default = lambda request: "Sure! Here are the facets: request=refund, task=billing"
    stub = await start(**llm_settings(fake_openai, max_attempts=2), custom_facets=[CUSTOM])
    reply = await stub.ExtractFacets(facets_pb2.ExtractFacetsRequest(conversations=[REFUND]))
    values = values_by_facet(reply.results[0])
    assert values["task"].provider == "heuristic" and values["task"].text == "account_billing"
    assert values["language"].provider == "heuristic"
    product = values["product"]
    assert product.failed and product.WhichOneof("value") is None
    assert f"{LLM}: invalid answer after 2 attempt(s): the reply is not valid JSON" in product.error
    assert "heuristic: the heuristic provider cannot answer" in product.error
    assert len(fake_openai.requests_to("chat")) == 2


@pytest.mark.parametrize(
    "faults",
    [
        [Behaviour.rate_limited(retry_after=0)],
        [Behaviour.server_error(500), Behaviour.server_error(503)],
        [Behaviour.broken_body()],
    ],
)
async def test_http_faults_are_retried(
    start: StartFn, fake_openai: FakeOpenAI, faults: list[Behaviour]
) -> None:
    fake_openai.chat_default = valid_reply
    fake_openai.script_chat(*faults)
    stub = await start(**llm_settings(fake_openai))
    reply = await stub.ExtractFacets(facets_pb2.ExtractFacetsRequest(conversations=[REFUND]))
    values = values_by_facet(reply.results[0])
    assert values["task"].provider == LLM
    assert len(fake_openai.requests_to("chat")) == len(faults) + 1


async def test_client_errors_are_not_retried(start: StartFn, fake_openai: FakeOpenAI) -> None:
    fake_openai.chat_default = valid_reply
    stub = await start(**llm_settings(fake_openai), custom_facets=[CUSTOM])
    await stub.ExtractFacets(facets_pb2.ExtractFacetsRequest(conversations=[REFUND]))  # settles the format
    fake_openai.reset()
    fake_openai.script_chat(Behaviour.server_error(400))
    reply = await stub.ExtractFacets(facets_pb2.ExtractFacetsRequest(conversations=[REFUND]))
    values = values_by_facet(reply.results[0])
    assert values["task"].provider == "heuristic"
    assert "HTTP 400" in values["product"].error
    assert len(fake_openai.requests_to("chat")) == 1


async def test_timeout_falls_back(start: StartFn, fake_openai: FakeOpenAI) -> None:
    fake_openai.script_chat(Behaviour.hang_forever(), Behaviour.hang_forever())
    stub = await start(
        **llm_settings(fake_openai, timeout_seconds=0.3, max_attempts=2), custom_facets=[CUSTOM]
    )
    reply = await stub.ExtractFacets(facets_pb2.ExtractFacetsRequest(conversations=[REFUND]))
    values = values_by_facet(reply.results[0])
    assert values["request"].provider == "heuristic" and not values["request"].failed
    assert "timed out" in values["product"].error
    assert len(fake_openai.requests_to("chat")) == 2


async def test_batch_runs_concurrently_within_the_limit(start: StartFn, fake_openai: FakeOpenAI) -> None:
    conversations = [
        conv(f"c{i}", (USER, f"Question number {i}: how do I reset my password?")) for i in range(64)
    ]
    fake_openai.script_chat(*[Behaviour(content=valid_reply, latency=0.2) for _ in conversations])
    stub = await start(**llm_settings(fake_openai, concurrency=16))
    reply = await stub.ExtractFacets(facets_pb2.ExtractFacetsRequest(conversations=conversations))
    assert [r.conversation_id for r in reply.results] == [c.id for c in conversations]
    assert all(values_by_facet(r)["task"].provider == LLM for r in reply.results)
    assert fake_openai.max_in_flight["chat"] == 16
    assert fake_openai.pending("chat") == 0


async def test_conversation_text_is_cut_to_the_budget(start: StartFn, fake_openai: FakeOpenAI) -> None:
    fake_openai.chat_default = valid_reply
    long = conv("long", (USER, "Please help. " + "blah " * 2000 + "SECRET-TAIL"))
    stub = await start(**llm_settings(fake_openai, max_chars=500))
    await stub.ExtractFacets(facets_pb2.ExtractFacetsRequest(conversations=[long], facets=["task"]))
    content = fake_openai.requests_to("chat")[0].body["messages"][1]["content"]
    assert "SECRET-TAIL" not in content
    assert "more characters cut" in content
    assert len(content) < 2000


async def test_json_object_mode(start: StartFn, fake_openai: FakeOpenAI) -> None:
    fake_openai.chat_default = lambda request: "```json\n" + json.dumps({"task": "coding"}) + "\n```"
    stub = await start(**llm_settings(fake_openai, response_format="json_object"))
    reply = await stub.ExtractFacets(facets_pb2.ExtractFacetsRequest(conversations=[CODE], facets=["task"]))
    value = reply.results[0].values[0]
    assert (value.provider, value.text) == (LLM, "coding")
    response_format = fake_openai.requests_to("chat")[0].body["response_format"]
    assert response_format["type"] == "json_object"
    assert response_format["schema"]["required"] == ["task"]  # for servers that read it (llama.cpp)


async def test_health_reports_serving_with_providers() -> None:
    settings = FacetsSettings.load(host="127.0.0.1", grpc_port=0, http_port=0)
    service = await start_service(build_service(settings))
    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            answer = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        status, body = await asyncio.to_thread(http_get, service.http_port, "/health")
        assert status == 200
        info = json.loads(body)
        assert info["status"] == "healthy"
        assert info["providers"] == {"heuristic": "available"} and info["providers_ready"] is True
    finally:
        await service.stop(grace=0)
