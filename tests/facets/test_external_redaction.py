"""privacy.redact_external: what an external LLM provider is sent of a conversation; no facet value carries a secret."""

from __future__ import annotations

import json

import pytest

from briefxai_facets.definitions import Conversation, FacetCatalog, FacetDefinition, FacetType, Job, Message
from briefxai_facets.openai_provider import OpenAIProvider, validate_value
from briefxai_facets.settings import FacetsSettings, OpenAIProviderSettings
from briefxai_facets.summary import summarize_request
from tests.support.fake_openai import FakeOpenAI

KEY = "sk-proj-Zq8Xw2Lm5Np7Rt1Vb3Yc6Hd9"
LEAKY = Conversation(
    "leaky",
    "u1",
    [
        Message("user", f"My key {KEY} stopped working, mail me at jane.doe@example.com"),
        Message("assistant", "Please rotate AKIAIOSFODNN7EXAMPLE as well."),
    ],
)
TASK = FacetCatalog().by_name["task"]


async def sent_prompt(fake_openai: FakeOpenAI, redact_external: bool) -> str:
    fake_openai.chat_default = lambda request: json.dumps({"task": "coding"})
    settings = OpenAIProviderSettings(base_url=fake_openai.base_url, model="m", api_key_env="")
    provider = OpenAIProvider(settings, redact_external=redact_external)
    await provider.start()
    try:
        [values] = await provider.extract([Job(LEAKY, (TASK,))])
    finally:
        await provider.close()
    assert values["task"].text == "coding"
    [request] = fake_openai.requests_to("chat")
    return json.dumps(request.body)


async def test_conversations_are_redacted_before_they_are_sent(fake_openai: FakeOpenAI) -> None:
    body = await sent_prompt(fake_openai, redact_external=True)
    assert KEY not in body and "AKIAIOSFODNN7EXAMPLE" not in body and "jane.doe" not in body
    assert "[SECRET]" in body and "[EMAIL]" in body


async def test_redaction_can_be_turned_off(fake_openai: FakeOpenAI) -> None:
    body = await sent_prompt(fake_openai, redact_external=False)
    assert KEY in body and "jane.doe@example.com" in body


@pytest.mark.parametrize(("value", "expected"), [({}, True), ({"redact_external": False}, False)])
def test_setting(value: dict[str, bool], expected: bool) -> None:
    assert FacetsSettings.model_validate({"privacy": value}).privacy.redact_external is expected


def test_answers_carry_no_secrets() -> None:
    custom = FacetDefinition("issue", "What is the issue?", FacetType.TEXT)
    assert validate_value(custom, f"The user pasted {KEY}", "p").text == "The user pasted [SECRET]"
    request = FacetCatalog().by_name["request"]
    assert (
        validate_value(request, f"The user wants {KEY} rotated", "p").text
        == "The user wants [SECRET] rotated"
    )


def test_the_heuristic_request_summary_carries_no_secret() -> None:
    summary = summarize_request([f"Hi! My OpenAI key {KEY} stopped working, and AKIAIOSFODNN7EXAMPLE too."])
    assert summary == "My OpenAI key [SECRET] stopped working, and [SECRET] too."
