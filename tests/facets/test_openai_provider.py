"""The OpenAI provider's pure parts: prompt, schema, reply parsing and validation."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from briefxai_facets.definitions import (
    BUILTIN_FACETS,
    Conversation,
    FacetCatalog,
    FacetDefinition,
    FacetType,
    Message,
)
from briefxai_facets.openai_provider import (
    build_messages,
    parse_reply,
    render_conversation,
    reply_schema,
    validate_value,
)

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
    assert props["task"]["enum"] == list(BY_NAME["task"].choices)
    assert (props["sentiment"]["minimum"], props["sentiment"]["maximum"]) == (-1, 1)
    assert props["concerning"]["required"] == ["value", "reason"]
    assert props["urgency"]["maximum"] == 10
    assert "maximum" not in reply_schema([BY_NAME["turns"]])["properties"]["turns"]  # unbounded


def test_prompt_names_every_facet_and_the_conversation() -> None:
    conversation = Conversation(
        "c", (Message("user", "Where is my parcel?"), Message("assistant", "On its way."))
    )
    system, user = build_messages(conversation, [BY_NAME["task"], URGENCY], 1000)
    assert "JSON" in system["content"]
    assert "USER: Where is my parcel?\n\nASSISTANT: On its way." in user["content"]
    assert '"task" (exactly one of: coding,' in user["content"]
    assert '"urgency" (a number from 0 to 10)' in user["content"]


def test_render_cuts_to_budget() -> None:
    conversation = Conversation("c", (Message("user", "x" * 1000),))
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
