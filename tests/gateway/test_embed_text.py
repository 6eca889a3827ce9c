"""Which text represents a conversation for embedding (briefxai_gateway.embed_text)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from briefxai_gateway.embed_text import CHARS_PER_TOKEN_BOUND, char_budget, embed_text, naming_text, truncate
from briefxai_gateway.models import Conversation, EmbedTextMode, FacetValue, Message


def conv(*turns: tuple[str, str]) -> Conversation:
    return Conversation(id="c", user_id="u", messages=[Message(role, content) for role, content in turns])


CHAT = conv(
    ("system", "You are a helpful assistant."),
    ("user", "How do I   reset my\npassword?"),
    ("assistant", "Open settings and click reset."),
    ("tool", '{"status": 200}'),
    ("user", "It says the link expired."),
)


def test_conversation_mode_joins_turns_without_role_prefixes_and_skips_system_and_tool() -> None:
    text = embed_text(CHAT, EmbedTextMode.CONVERSATION, 1200).text
    assert text == ("How do I reset my password?\nOpen settings and click reset.\nIt says the link expired.")


def test_empty_turns_add_no_blank_lines() -> None:
    chat = conv(("user", "   "), ("assistant", "Hello"), ("user", "Refund please"))
    assert embed_text(chat, EmbedTextMode.CONVERSATION, 100).text == "Hello\nRefund please"


def test_char_budget_follows_the_token_budget_within_the_service_limit() -> None:
    assert char_budget(64) == 64 * CHARS_PER_TOKEN_BOUND
    assert char_budget(64, max_chars_per_text=100) == 100
    assert char_budget(64, max_chars_per_text=0) == 64 * CHARS_PER_TOKEN_BOUND


def test_conversation_mode_respects_the_budget_at_a_word_boundary() -> None:
    long = conv(("user", "word " * 1000), ("assistant", "answer"))
    text = embed_text(long, EmbedTextMode.CONVERSATION, 100).text
    assert len(text) <= 100
    assert text.startswith("word word")
    assert text.endswith("word")


def test_user_messages_mode() -> None:
    text = embed_text(CHAT, EmbedTextMode.USER_MESSAGES, 1200).text
    assert text == "How do I reset my password?\nIt says the link expired."


def test_first_user_message_mode() -> None:
    assert embed_text(CHAT, EmbedTextMode.FIRST_USER_MESSAGE, 1200).text == "How do I reset my password?"


def test_request_summary_uses_the_request_facet() -> None:
    facets = [FacetValue("request", text="Help resetting a password."), FacetValue("sentiment", number=0.1)]
    chosen = embed_text(CHAT, EmbedTextMode.REQUEST_SUMMARY, 1200, facets)
    assert chosen.text == "Help resetting a password."
    assert not chosen.fallback


def test_request_summary_falls_back_to_first_user_message() -> None:
    failed = [FacetValue("request", failed=True, error="provider down")]
    chosen = embed_text(CHAT, EmbedTextMode.REQUEST_SUMMARY, 1200, failed)
    assert chosen.text == "How do I reset my password?"
    assert chosen.fallback


def test_no_user_turn_falls_back_to_first_message() -> None:
    only_system = conv(("system", "Hello there"))
    for mode in EmbedTextMode:
        assert embed_text(only_system, mode, 100).text == "Hello there"
    only_assistant = conv(("assistant", "Hi"))
    assert embed_text(only_assistant, EmbedTextMode.CONVERSATION, 100).text == "Hi"
    assert embed_text(only_assistant, EmbedTextMode.USER_MESSAGES, 100).text == "Hi"


def test_naming_text_prefers_the_summary() -> None:
    assert naming_text("Reset a   password", CHAT.messages, 50) == "Reset a password"
    assert naming_text("", CHAT.messages, 8) == "How do I"


def test_truncate_edge_cases() -> None:
    assert truncate("abc", 0) == ""
    assert truncate("abc", 5) == "abc"
    assert truncate("abcdefghij", 4) == "abcd"


messages = st.lists(
    st.builds(
        Message,
        role=st.sampled_from(["user", "assistant", "system", "tool"]),
        content=st.text(min_size=1, max_size=300).filter(lambda s: s.strip() != ""),
    ),
    min_size=1,
    max_size=8,
)


@given(
    messages=messages,
    budget=st.integers(min_value=16, max_value=2000),
    mode=st.sampled_from(list(EmbedTextMode)),
)
def test_every_mode_stays_within_budget_and_is_never_empty(
    messages: list[Message], budget: int, mode: EmbedTextMode
) -> None:
    text = embed_text(Conversation("c", "", messages), mode, budget).text
    assert len(text) <= budget
    assert text.strip() != ""
