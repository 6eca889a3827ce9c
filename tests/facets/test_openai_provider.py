"""The OpenAI provider: prompt, schema, reply parsing, validation; its HTTP client on the scripted server."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from pydantic import ValidationError

from briefxai_common.llm import ChatClient, chat_completions_url, parse_retry_after
from briefxai_facets.definitions import (
    BUILTIN_FACETS,
    Conversation,
    FacetCatalog,
    FacetDefinition,
    FacetType,
    Job,
    Message,
)
from briefxai_facets.openai_provider import (
    OpenAIProvider,
    build_messages,
    parse_reply,
    render_conversation,
    reply_content,
    reply_schema,
    validate_value,
)
from briefxai_facets.settings import OpenAIProviderSettings
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.ports import free_port

CATALOG = FacetCatalog()
BY_NAME = CATALOG.by_name
URGENCY = FacetDefinition("urgency", "How urgent is it?", FacetType.NUMBER, min=0, max=10)


def value(name: str, raw: Any) -> Any:
    facet = URGENCY if name == "urgency" else BY_NAME[name]
    result = validate_value(facet, raw, "openai:m")
    return result.number if result.number is not None else result.text


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("sentiment", -0.5, -0.5),
        ("sentiment", 1, 1.0),
        ("task", "Coding", "coding"),
        ("task", "  account_billing ", "account_billing"),
        ("language", "EN", "en"),
        ("language", "pt-BR", "pt"),
        ("language", "und", "und"),
        ("concerning", {"value": 3, "reason": "asks about lock picking"}, 3.0),
        ("concerning", 1, 1.0),
        ("urgency", 7.5, 7.5),
        ("request", "Refund to bob@example.com please", "Refund to [EMAIL] please"),
    ],
)
def test_valid_values(name: str, raw: Any, expected: Any) -> None:
    assert value(name, raw) == expected


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("sentiment", 1.5, "outside"),
        ("sentiment", "0.5", "expected a number"),
        ("sentiment", True, "expected a number"),
        ("sentiment", math.nan, "outside"),
        ("concerning", 0, "outside"),
        ("concerning", {"reason": "x"}, 'missing "value"'),
        ("concerning", {"value": 2, "reason": 5}, "reason"),
        ("task", "banking", "not one of"),
        ("task", 3, "expected a string"),
        ("language", "english", "ISO 639-1"),
        ("language", "xx", "ISO 639-1"),
        ("request", "   ", "empty"),
        ("request", None, "expected a string"),
        ("urgency", 11, "outside"),
    ],
)
def test_invalid_values(name: str, raw: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        value(name, raw)


def test_an_answer_that_repeats_the_question_is_no_answer() -> None:
    """Small models (SmolLM2-135M on llama.cpp, docs/quality.md) often answer by repeating the question."""
    question = BY_NAME["request"].question
    with pytest.raises(ValueError, match="repeats the question"):
        validate_value(BY_NAME["request"], question, "p")
    with pytest.raises(ValueError, match="repeats the question"):
        validate_value(BY_NAME["request"], "The user: " + question[10:80], "p")
    echoed = validate_value(BY_NAME["task"], {"value": "coding", "reason": BY_NAME["task"].question}, "p")
    assert (echoed.text, echoed.reason) == ("coding", "")  # the category stands, the echo goes
    fine = validate_value(BY_NAME["request"], "The user wants help with a failing Docker image build.", "p")
    assert fine.text == "The user wants help with a failing Docker image build."


def test_reason_is_kept() -> None:
    result = validate_value(
        BY_NAME["concerning"], {"value": 4, "reason": " asks  how to\nhurt someone "}, "p"
    )
    assert (result.number, result.reason, result.provider) == (4.0, "asks how to hurt someone", "p")


@pytest.mark.parametrize(
    ("content", "expected"),
    [('{"a": 1}', {"a": 1}), ('```json\n{"a": 1}\n```', {"a": 1}), (' ```\n{"a": [1]}\n``` ', {"a": [1]})],
)
def test_parse_reply(content: str, expected: dict[str, Any]) -> None:
    assert parse_reply(content) == expected


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "empty"),
        ("", "empty"),
        ('{"a": ', "not valid JSON"),
        ("[1, 2]", "not an object"),
        ("Sure!", "JSON"),
    ],
)
def test_parse_reply_rejects(content: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_reply(content)


def test_schema_follows_definitions() -> None:
    facets = [*BUILTIN_FACETS[:5], URGENCY]
    schema = reply_schema(facets)
    assert schema["required"] == ["request", "task", "language", "sentiment", "concerning", "urgency"]
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert props["task"]["required"] == ["value", "reason"]
    assert props["task"]["properties"]["value"]["enum"] == list(BY_NAME["task"].choices)
    assert (props["sentiment"]["minimum"], props["sentiment"]["maximum"]) == (-1, 1)
    assert props["concerning"]["required"] == ["value", "reason"]
    assert props["urgency"]["maximum"] == 10
    assert "maximum" not in reply_schema([BY_NAME["turns"]])["properties"]["turns"]  # unbounded


def test_prompt_names_every_facet_and_the_conversation() -> None:
    conversation = Conversation(
        "c", "", [Message("user", "Where is my parcel?"), Message("assistant", "On its way.")]
    )
    system, user = build_messages(conversation, [BY_NAME["task"], URGENCY], 1000)
    assert "JSON" in system["content"]
    assert "USER: Where is my parcel?\n\nASSISTANT: On its way." in user["content"]
    assert '"task" (an object {"value": exactly one of: coding,' in user["content"]
    assert '"urgency" (a number from 0 to 10)' in user["content"]


def test_render_cuts_to_budget() -> None:
    conversation = Conversation("c", "", [Message("user", "x" * 1000)])
    text = render_conversation(conversation, 300)
    assert text.startswith("USER: xxx")
    assert text.endswith("[... 706 more characters cut]")


@given(raw=st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30),
                     st.dictionaries(st.text(max_size=6), st.integers() | st.text(max_size=6), max_size=3)))  # fmt: skip
def test_validation_never_lets_garbage_through(raw: Any) -> None:
    for facet in (*BUILTIN_FACETS[:5], URGENCY):
        try:
            result = validate_value(facet, raw, "p")
        except ValueError:
            continue
        if facet.type is FacetType.NUMBER:
            assert result.number is not None and facet.min <= result.number <= facet.max
        elif facet.type is FacetType.ENUM:
            assert result.text in facet.choices
        else:
            assert result.text


# ---- the HTTP side, against the scripted server -----------------------------------------------------

KEY_ENV = "BRIEFXAI_TEST_PROVIDER_KEY"
ASKED = (BY_NAME["task"], BY_NAME["language"], BY_NAME["turns"])  # turns: never asked of the LLM
REFUND = Conversation("refund", "", [Message("user", "I was charged twice, please refund me.")])
GOOD = json.dumps({"task": "account_billing", "language": "en"})

MakeProvider = Callable[..., Awaitable[OpenAIProvider]]


@pytest.fixture
async def make_provider(fake_openai: FakeOpenAI) -> AsyncIterator[MakeProvider]:
    """Started providers on the scripted server (settings overridable); all closed after the test."""
    providers: list[OpenAIProvider] = []

    async def _make(**overrides: Any) -> OpenAIProvider:
        values: dict[str, Any] = {
            "base_url": fake_openai.base_url,
            "model": "m",
            "api_key_env": KEY_ENV,
            "timeout_seconds": 2.0,
            "max_attempts": 3,
            "backoff_initial_seconds": 0.0,
            "backoff_max_seconds": 0.05,
        }
        values.update(overrides)
        provider = OpenAIProvider(OpenAIProviderSettings(**values))
        await provider.start()
        providers.append(provider)
        return provider

    yield _make
    for provider in providers:
        await provider.close()


async def extract_one(provider: OpenAIProvider) -> dict[str, Any]:
    [values] = await provider.extract([Job(REFUND, ASKED)])
    return values


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("http://h:1/v1", "http://h:1/v1/chat/completions"),
        ("http://h:1/v1/", "http://h:1/v1/chat/completions"),
        ("https://h/api/openai/v1//", "https://h/api/openai/v1/chat/completions"),
    ],
)
def test_chat_completions_url(base_url: str, expected: str) -> None:
    assert chat_completions_url(base_url) == expected


@pytest.mark.parametrize("base_url", ["localhost:11434/v1", "ftp://h/v1", "http://", " http://h/v1", ""])
def test_base_url_must_be_http(base_url: str) -> None:
    with pytest.raises(ValidationError, match="base_url"):
        OpenAIProviderSettings(base_url=base_url)


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("3", 3.0),
        (" 0.5 ", 0.5),
        ("-4", 0.0),
        ("inf", None),
        ("nan", None),
        ("soon", None),
        ("", None),
        (format_datetime(datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=12), usegmt=True), 12.0),
        (format_datetime(datetime.fromtimestamp(NOW, UTC) - timedelta(seconds=12), usegmt=True), 0.0),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == expected


@pytest.mark.parametrize(
    ("response", "message"),
    [
        ({"choices": []}, "no choices"),
        ({"object": "chat.completion"}, "no choices"),
        ([1, 2], "no choices"),
        ({"choices": [{"index": 0}]}, "no message"),
        ({"choices": [{"message": {"content": {"task": "coding"}}}]}, "not a string"),
    ],
)
def test_reply_content_rejects(response: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        reply_content(response)


def test_reply_content() -> None:
    assert reply_content({"choices": [{"message": {"role": "assistant", "content": "hi"}}]}) == "hi"
    assert reply_content({"choices": [{"message": {"role": "assistant", "content": None}}]}) is None


@pytest.mark.parametrize("trailing_slash", [False, True])
async def test_request_shape_without_key(
    make_provider: MakeProvider,
    fake_openai: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
    trailing_slash: bool,
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    fake_openai.chat_default = lambda request: GOOD
    base_url = fake_openai.base_url + ("/" if trailing_slash else "")
    provider = await make_provider(base_url=base_url, temperature=0.3, max_output_tokens=99)
    values = await extract_one(provider)
    assert {name: value.text for name, value in values.items()} == {
        "task": "account_billing",
        "language": "en",
    }
    assert all(value.provider == "openai:m" for value in values.values())
    [request] = fake_openai.requests_to("chat")
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    headers = {name.lower(): value for name, value in request.headers.items()}
    assert "authorization" not in headers
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "briefxai-facets"
    body = request.body
    assert set(body) == {"model", "messages", "temperature", "max_tokens", "response_format"}
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("m", 0.3, 99)
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["strict"] is True
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["task", "language"]


async def test_key_goes_in_the_header_only(
    make_provider: MakeProvider, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv(KEY_ENV, secret)
    fake_openai.script_chat(Behaviour.server_error(401))
    with structlog.testing.capture_logs() as logs:
        provider = await make_provider()
        values = await extract_one(provider)
    [request] = fake_openai.requests_to("chat")
    assert request.headers["Authorization"] == f"Bearer {secret}"
    assert secret not in repr(provider._client) and secret not in repr(logs)
    assert "HTTP 401 from the LLM server" in values["task"].error
    assert not any(entry["event"] == "llm_api_key_missing" for entry in logs)


@pytest.mark.parametrize("response_format", ["json_object", "none"])
async def test_other_response_formats(
    make_provider: MakeProvider, fake_openai: FakeOpenAI, response_format: str
) -> None:
    fake_openai.chat_default = lambda request: GOOD
    provider = await make_provider(response_format=response_format)
    values = await extract_one(provider)
    assert values["task"].text == "account_billing"
    body = fake_openai.requests_to("chat")[0].body
    schema = body["messages"][1]["content"].split("valid against this JSON schema:\n", 1)[1]
    assert json.loads(schema)["required"] == ["task", "language"]  # the schema is in the prompt
    if response_format == "none":
        assert "response_format" not in body
    else:  # JSON mode, with the schema along for servers that read it (llama.cpp's grammar)
        assert body["response_format"] == {"type": "json_object", "schema": json.loads(schema)}


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
async def test_client_errors_are_not_retried(
    make_provider: MakeProvider, fake_openai: FakeOpenAI, status: int
) -> None:
    fake_openai.chat_default = lambda request: GOOD
    fake_openai.script_chat(Behaviour.server_error(status))
    # no response_format: nothing to negotiate (tests/facets/test_response_format.py), only the retry policy
    values = await extract_one(await make_provider(response_format="none"))
    assert set(values) == {"task", "language"}
    for value in values.values():
        assert value.failed
        assert value.error == f"HTTP {status} from the LLM server (after up to 3 attempt(s))"
    assert len(fake_openai.requests_to("chat")) == 1


@pytest.mark.parametrize(
    "fault",
    [
        Behaviour.server_error(408),
        Behaviour.rate_limited(),
        Behaviour.server_error(502),
        Behaviour.broken_body(),
        Behaviour.broken_body(""),
        Behaviour.broken_body('{"object": "chat.completion", "choices": []}'),
        Behaviour.broken_body('{"error": {"message": "overloaded"}}'),
    ],
)
async def test_retried_faults(make_provider: MakeProvider, fake_openai: FakeOpenAI, fault: Behaviour) -> None:
    fake_openai.chat_default = lambda request: GOOD
    fake_openai.script_chat(fault)
    values = await extract_one(await make_provider())
    assert values["task"].text == "account_billing" and not values["language"].failed
    assert len(fake_openai.requests_to("chat")) == 2


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (
            Behaviour.broken_body(),
            "the LLM server sent a response body that is not JSON (after up to 2 attempt(s))",
        ),
        (Behaviour.server_error(503), "HTTP 503 from the LLM server (after up to 2 attempt(s))"),
        (
            Behaviour.broken_body('{"choices": []}'),
            "invalid answer after 2 attempt(s): the reply has no choices",
        ),
        (Behaviour.hang_forever(), "the LLM request timed out (after up to 2 attempt(s))"),
    ],
)
async def test_lasting_faults_give_failed_values(
    make_provider: MakeProvider, fake_openai: FakeOpenAI, fault: Behaviour, error: str
) -> None:
    fake_openai.script_chat(fault, fault)
    values = await extract_one(await make_provider(max_attempts=2, timeout_seconds=0.3))
    assert {name: (value.failed, value.error) for name, value in values.items()} == {
        "task": (True, error),
        "language": (True, error),
    }
    assert len(fake_openai.requests_to("chat")) == 2


async def test_unreachable_server(make_provider: MakeProvider) -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    values = await extract_one(await make_provider(base_url=base_url, max_attempts=2))
    error = values["task"].error
    assert values["task"].failed and error.startswith("cannot reach the LLM server (ClientConnectorError")
    assert error.endswith("(after up to 2 attempt(s))")


async def test_retry_after_is_honoured(make_provider: MakeProvider, fake_openai: FakeOpenAI) -> None:
    fake_openai.chat_default = lambda request: GOOD
    fake_openai.script_chat(Behaviour.rate_limited(retry_after=0.4))
    values = await extract_one(await make_provider(backoff_max_seconds=5.0))
    assert values["task"].text == "account_billing"
    first, second = fake_openai.requests_to("chat")
    assert second.received_at - first.received_at >= 0.35  # backoff alone would not wait (initial 0 s)


async def test_a_retry_after_longer_than_the_policy_allows_ends_the_retries(
    make_provider: MakeProvider, fake_openai: FakeOpenAI
) -> None:
    """Retrying sooner than the server asked is not honouring it; waiting longer than the policy allows
    holds the batch: the values fail here, and the chain asks the next provider."""
    fake_openai.chat_default = lambda request: GOOD
    fake_openai.script_chat(Behaviour.rate_limited(retry_after=30))
    labels = {"service": "facets", "dependency": "openai", "reason": "retry_after"}
    denied = REGISTRY.get_sample_value("briefxai_retries_denied_total", labels) or 0.0
    values = await extract_one(await make_provider(backoff_max_seconds=0.05))
    assert values["task"].failed and values["task"].failure_reason == "rate_limited"
    assert len(fake_openai.requests_to("chat")) == 1
    assert REGISTRY.get_sample_value("briefxai_retries_denied_total", labels) == denied + 1


async def test_close_then_extract_opens_again(make_provider: MakeProvider, fake_openai: FakeOpenAI) -> None:
    fake_openai.chat_default = lambda request: GOOD
    provider = await make_provider()
    await provider.close()
    await provider.close()  # twice is fine
    assert (await extract_one(provider))["task"].text == "account_billing"


async def test_connections_are_limited(make_provider: MakeProvider, fake_openai: FakeOpenAI) -> None:
    fake_openai.chat_default = lambda request: GOOD
    provider = await make_provider(concurrency=4)
    jobs = [Job(Conversation(f"c{i}", "", REFUND.messages), ASKED) for i in range(12)]
    fake_openai.script_chat(*[Behaviour(content=GOOD, latency=0.05) for _ in jobs])
    results = await provider.extract(jobs)
    assert all(values["task"].text == "account_billing" for values in results)
    assert fake_openai.max_in_flight["chat"] == 4
    client = provider._client
    assert isinstance(client, ChatClient) and client._session is not None
    connector = client._session.connector
    assert connector is not None and connector.limit == 4
