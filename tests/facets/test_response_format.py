"""``response_format`` negotiation: servers that refuse OpenAI's ``json_schema`` (llama.cpp's server
answers HTTP 500) still get every conversation answered by the LLM, after one refused request, and the
format they take is remembered and shown in /health. Over real sockets: the real facets service and the
scripted OpenAI-compatible server, taught each server's dialect."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, cast

import grpc
import pytest
import structlog

from briefxai.common.v1 import common_pb2
from briefxai.facets.v1 import facets_pb2, facets_pb2_grpc
from briefxai_common.bootstrap import start_service
from briefxai_common.llm import LLMStatusError, ResponseFormat, ResponseFormatNegotiator
from briefxai_facets.server import build_service
from briefxai_facets.settings import FacetsSettings
from tests.support.fake_openai import Behaviour, FakeOpenAI, RecordedRequest
from tests.support.http import get_json

from .test_service import LLM, Stub, llm_settings

ANSWERS: dict[str, Any] = {
    "request": "The user wants a refund for a subscription that was charged twice.",
    "task": {"value": "account_billing", "reason": "Get a duplicate subscription charge refunded."},
    "language": "en",
    "sentiment": -0.25,
    "concerning": {"value": 1, "reason": "An ordinary billing question."},
}


def schema_of(request: dict[str, Any]) -> dict[str, Any]:
    """The reply schema the request carries: in ``response_format``, else written into the prompt."""
    response_format = request.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return cast(dict[str, Any], response_format["json_schema"]["schema"])
    if response_format.get("type") == "json_object":
        return cast(dict[str, Any], response_format["schema"])
    prompt = request["messages"][-1]["content"]
    return cast(dict[str, Any], json.loads(prompt.split("valid against this JSON schema:\n", 1)[1]))


def answer(request: dict[str, Any]) -> str:
    return json.dumps({name: ANSWERS[name] for name in schema_of(request)["properties"]})


def conversations(count: int) -> list[common_pb2.Conversation]:
    return [
        common_pb2.Conversation(
            id=f"c{i}",
            user_id=f"u{i}",
            messages=[
                common_pb2.Message(
                    role=common_pb2.ROLE_USER,
                    content=f"I was charged twice this month (case {i}), refund me.",
                ),
                common_pb2.Message(role=common_pb2.ROLE_ASSISTANT, content="I have refunded the charge."),
            ],
        )
        for i in range(count)
    ]


def formats(requests: list[RecordedRequest]) -> list[str]:
    return [(r.body.get("response_format") or {}).get("type", "none") for r in requests]


Extract = Callable[[int], Awaitable[list[facets_pb2.ConversationFacets]]]


async def run_service(fake: FakeOpenAI, check: Callable[[Extract, int], Awaitable[None]], **llm: Any) -> None:
    settings = FacetsSettings.load(
        host="127.0.0.1", grpc_port=0, http_port=0, **llm_settings(fake, concurrency=4, **llm)
    )
    service = await start_service(build_service(settings))
    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            stub = cast(Stub, facets_pb2_grpc.FacetsServiceStub(channel))

            async def extract(count: int) -> list[facets_pb2.ConversationFacets]:
                reply = await stub.ExtractFacets(
                    facets_pb2.ExtractFacetsRequest(conversations=conversations(count))
                )
                return list(reply.results)

            await check(extract, service.http_port)
    finally:
        await service.stop(grace=0)


def assert_all_from_the_llm(results: list[facets_pb2.ConversationFacets]) -> None:
    for result in results:
        values = {v.facet: v for v in result.values}
        for name in ANSWERS:
            assert (values[name].provider, values[name].failed) == (LLM, False), (
                result.conversation_id,
                name,
            )
        assert values["request"].text == ANSWERS["request"]
        assert (values["task"].text, values["task"].reason) == ("account_billing", ANSWERS["task"]["reason"])


async def test_llama_cpp_server_one_refused_request_then_json_object_for_all(fake_openai: FakeOpenAI) -> None:
    fake_openai.dialect = "llama_cpp"
    fake_openai.chat_default = answer

    async def check(extract: Extract, http_port: int) -> None:
        with structlog.testing.capture_logs() as logs:
            assert_all_from_the_llm(await extract(12))
            assert_all_from_the_llm(await extract(12))  # a second batch: remembered, nothing refused
        chat = fake_openai.requests_to("chat")
        assert formats(chat) == ["json_schema"] + ["json_object"] * 24
        assert all("schema" in r.body["response_format"] for r in chat[1:])  # llama.cpp's grammar
        downgrades = [e for e in logs if e["event"] == "llm_response_format_downgraded"]
        assert [(e["rejected"], e["now"], e["status"]) for e in downgrades] == [
            ("json_schema", "json_object", 500)
        ]
        status, health = await get_json(http_port, "/health")
        assert (status, health["status"], health["providers"][LLM]) == (200, "healthy", "available")
        state = health["response_formats"][LLM]
        assert (state["configured"], state["current"], state["settled"]) == (
            "json_schema",
            "json_object",
            True,
        )
        [step] = state["downgrades"]
        assert step.startswith("json_schema -> json_object (HTTP 500: ") and "response_format" in step

    await run_service(fake_openai, check)


async def test_server_without_response_format_gets_the_schema_in_the_prompt(fake_openai: FakeOpenAI) -> None:
    fake_openai.dialect = "no_response_format"
    fake_openai.chat_default = answer

    async def check(extract: Extract, http_port: int) -> None:
        assert_all_from_the_llm(await extract(6))
        assert formats(fake_openai.requests_to("chat")) == ["json_schema", "json_object"] + ["none"] * 6
        _, health = await get_json(http_port, "/health")
        assert health["response_formats"][LLM]["current"] == "none"
        assert len(health["response_formats"][LLM]["downgrades"]) == 2

    await run_service(fake_openai, check)


async def test_unexplained_refusal_is_confirmed_before_moving_down(fake_openai: FakeOpenAI) -> None:
    """A bare 500 to json_schema: sent once more as it was, refused again, then json_object is tried
    and remembered since it is answered."""
    fake_openai.dialect = "opaque"
    fake_openai.chat_default = answer

    async def check(extract: Extract, http_port: int) -> None:
        assert_all_from_the_llm(await extract(5))
        assert (
            formats(fake_openai.requests_to("chat")) == ["json_schema", "json_schema"] + ["json_object"] * 5
        )
        _, health = await get_json(http_port, "/health")
        assert health["response_formats"][LLM]["current"] == "json_object"

    await run_service(fake_openai, check)


async def test_a_passing_fault_is_not_a_refusal(fake_openai: FakeOpenAI) -> None:
    fake_openai.chat_default = answer
    fake_openai.script_chat(Behaviour.server_error(500))

    async def check(extract: Extract, http_port: int) -> None:
        assert_all_from_the_llm(await extract(4))
        assert formats(fake_openai.requests_to("chat")) == ["json_schema"] * 5
        _, health = await get_json(http_port, "/health")
        assert health["response_formats"][LLM] == {
            "configured": "json_schema",
            "current": "json_schema",
            "settled": True,
            "downgrades": [],
        }

    await run_service(fake_openai, check)


@pytest.mark.parametrize("configured", ["json_object", "none"])
async def test_a_configured_format_is_where_negotiation_starts(
    fake_openai: FakeOpenAI, configured: ResponseFormat
) -> None:
    fake_openai.dialect = "llama_cpp"
    fake_openai.chat_default = answer

    async def check(extract: Extract, http_port: int) -> None:
        assert_all_from_the_llm(await extract(3))
        assert formats(fake_openai.requests_to("chat")) == [configured] * 3

    await run_service(fake_openai, check, response_format=configured)


# ---- the negotiator on its own ------------------------------------------------------------------------


async def test_a_named_refusal_after_settling_moves_down_once() -> None:
    """Requests already in flight in the old format when the server starts refusing it (e.g. a model
    swapped behind a proxy) are each sent again in the new one; the step is taken and logged once."""
    negotiator = ResponseFormatNegotiator("p", "json_schema")
    refusing = asyncio.Event()
    sent: list[str] = []

    async def send(fmt: ResponseFormat) -> str:
        sent.append(fmt)
        if refusing.is_set() and fmt == "json_schema":
            await asyncio.sleep(0)
            raise LLMStatusError(400, "response_format json_schema is not supported by this model")
        return fmt

    assert await negotiator.call(send) == "json_schema"  # settles the gate
    refusing.set()
    with structlog.testing.capture_logs() as logs:
        results = await asyncio.gather(*(negotiator.call(send) for _ in range(5)))
    assert results == ["json_object"] * 5
    assert sent.count("json_schema") == 1 + 5 and sent.count("json_object") == 5
    assert [e["event"] for e in logs] == ["llm_response_format_downgraded"]
    assert negotiator.current == "json_object" and len(negotiator.downgrades) == 1


async def test_faults_that_say_nothing_about_the_format_are_raised() -> None:
    negotiator = ResponseFormatNegotiator("p", "json_schema")
    calls: list[str] = []

    async def send(fmt: ResponseFormat) -> str:
        calls.append(fmt)
        raise LLMStatusError(429, "slow down")

    with pytest.raises(LLMStatusError):
        await negotiator.call(send)
    assert calls == ["json_schema"] and negotiator.current == "json_schema"
    assert negotiator.describe()["settled"] is True  # the gate opened: nothing was learnt, nothing held


async def test_a_refused_none_is_an_ordinary_fault() -> None:
    negotiator = ResponseFormatNegotiator("p", "none")

    async def send(fmt: ResponseFormat) -> str:
        raise LLMStatusError(500, "response_format broke the server")

    with pytest.raises(LLMStatusError):
        await negotiator.call(send)
    assert negotiator.current == "none" and negotiator.downgrades == []
