"""The heuristic provider as a whole: every built-in value, custom facets, and arbitrary input."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from briefxai_facets.definitions import (
    TASK_CHOICES,
    Conversation,
    FacetCatalog,
    FacetDefinition,
    FacetType,
    Job,
    Message,
)
from briefxai_facets.heuristic import HeuristicAnalyzer, HeuristicProvider, approx_tokens
from briefxai_facets.language import ISO_639_1
from briefxai_facets.settings import HeuristicSettings
from tests.facets.corpus import make_conversations

CATALOG = FacetCatalog()


@pytest.fixture(scope="module")
def analyzer() -> HeuristicAnalyzer:
    return HeuristicAnalyzer(HeuristicSettings())


def conversation(*messages: tuple[str, str]) -> Conversation:
    return Conversation("c1", "", [Message(role, content) for role, content in messages])


def test_all_builtin_values(analyzer: HeuristicAnalyzer) -> None:
    conv = conversation(
        ("system", "You are a support agent."),
        ("user", "Hi! I was charged twice for my subscription, please refund me. Mail: ann@example.com"),
        ("assistant", "Sorry about that, I have issued the refund."),
        ("user", "Great, thank you so much!"),
    )
    values = analyzer.analyze(Job(conv, CATALOG.all))
    assert {v.provider for v in values.values()} == {"heuristic"}
    assert not any(v.failed for v in values.values())
    assert values["request"].text == "I was charged twice for my subscription, please refund me."
    assert values["task"].text == "account_billing"
    assert values["language"].text == "en"
    assert values["sentiment"].number is not None and values["sentiment"].number > 0
    assert values["concerning"].number == 1.0
    assert values["concerning"].reason
    assert values["turns"].number == 3.0
    assert values["user_turns"].number == 2.0
    assert values["tokens"].number == sum(approx_tokens(m.content) for m in conv.messages)


def test_no_user_text_fails_request_only(analyzer: HeuristicAnalyzer) -> None:
    values = analyzer.analyze(Job(conversation(("assistant", "How can I help?")), CATALOG.all))
    assert values["request"].failed
    assert "no user text" in values["request"].error
    assert values["language"].text == "und"
    assert values["user_turns"].number == 0.0


def test_custom_facet_fails_with_clear_error(analyzer: HeuristicAnalyzer) -> None:
    custom = FacetDefinition("product", "Which product is discussed?", FacetType.TEXT)
    values = analyzer.analyze(Job(conversation(("user", "The Model X blender broke.")), (custom,)))
    assert values["product"].failed
    assert "LLM provider" in values["product"].error


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("", 0), ("hello", 1), ("internationalization", 4), ("Hello, world!", 4), ("你好吗", 3), ("12345", 2)],
)
def test_approx_tokens(text: str, tokens: int) -> None:
    assert approx_tokens(text) == tokens


async def test_provider_batches_keep_order() -> None:
    conversations = make_conversations(45)
    provider = HeuristicProvider(HeuristicSettings(batch_size=7))
    await provider.start()
    try:
        results = await provider.extract([Job(c, CATALOG.select(["user_turns"])) for c in conversations])
    finally:
        await provider.close()
    expected = [float(sum(1 for m in c.messages if m.role == "user")) for c in conversations]
    assert [r["user_turns"].number for r in results] == expected


async def test_worker_processes_give_the_same_values() -> None:
    conversations = make_conversations(30)
    jobs = [Job(c, CATALOG.all) for c in conversations]
    threaded = HeuristicProvider(HeuristicSettings())
    processes = HeuristicProvider(HeuristicSettings(workers=2, batch_size=8))
    await threaded.start()
    await processes.start()
    try:
        assert await processes.extract(jobs) == await threaded.extract(jobs)
    finally:
        await threaded.close()
        await processes.close()


roles = st.sampled_from(["user", "assistant", "system", "tool"])
texts = st.text(max_size=400) | st.sampled_from(
    [
        "",
        " ",
        "\n\n",
        "```",
        "```python\n",
        "my name is",
        "+1",
        "4111 1111 1111 1111",
        "😀" * 50,
        "\x00\ud7ff",
    ]
)
messages = st.lists(st.tuples(roles, texts), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=messages)
def test_arbitrary_text_never_crashes_and_stays_in_range(
    analyzer: HeuristicAnalyzer, messages: list[tuple[str, str]]
) -> None:
    conv = Conversation("h", "", [Message(role, content) for role, content in messages])
    values = analyzer.analyze(Job(conv, CATALOG.all))
    assert set(values) == {f.name for f in CATALOG.all}
    for name, value in values.items():
        assert value.facet == name and value.provider == "heuristic"
        if value.failed:
            assert name == "request" and value.error
            continue
        definition = CATALOG.by_name[name]
        if definition.type is FacetType.NUMBER:
            assert value.number is not None and math.isfinite(value.number)
            assert definition.min <= value.number <= definition.max
        else:
            assert value.text is not None
    assert values["task"].text in TASK_CHOICES
    assert values["language"].text in ISO_639_1
    assert values["concerning"].number in (1.0, 2.0, 3.0, 4.0, 5.0)
    request = values["request"]
    if not request.failed:
        assert request.text and len(request.text) <= 200
