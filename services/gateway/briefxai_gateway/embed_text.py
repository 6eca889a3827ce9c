"""Which text represents a conversation for embedding, and how much of it.

The budget is in **tokens** of the embedding model (``embed_token_budget``, default 64), its unit of
cost: the embedding service cuts each text after that many tokens (``EmbedTextsRequest.max_tokens``).
The gateway only pre-cuts characters, generously (``CHARS_PER_TOKEN_BOUND`` per token), so that no text
crosses the wire for nothing. Measured on real human chats (docs/quality.md): the first 64 tokens of
the conversation agree better with topic labels than its first 256 (AMI 0.39 against 0.27, automatic k):
real chats drift off topic, and the opening is where the topic is set. They are also three times cheaper.

- ``CONVERSATION`` (default): the user and assistant turns in order, joined by newlines, whitespace
  collapsed, *without* role prefixes (``User:``/``Assistant:`` prefixes cost ~0.04 AMI on real chats:
  they are the same tokens in every text and pull all vectors together). System prompts are left out
  (the same boilerplate in every conversation of an assistant log), and so is tool output (noise).
- ``USER_MESSAGES``: the user's turns only, joined by newlines.
- ``FIRST_USER_MESSAGE``: the first user turn (cheapest; loses the topic when it is a greeting).
- ``REQUEST_SUMMARY``: the ``request`` facet (a one-sentence summary); when it is missing or failed,
  the first user message stands in and the caller is told (``EmbedText.fallback``).

A conversation without a user turn falls back to its first message of any role, so no mode ever
returns an empty text for a valid conversation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from briefxai_common.conversations import Role
from briefxai_common.text import truncate

from .models import Conversation, EmbedTextMode, FacetValue, Message

CONVERSATION_ROLES = frozenset({Role.USER, Role.ASSISTANT})
USER_ROLE = frozenset({Role.USER})
REQUEST_FACET = "request"
# Characters sent per token of budget: English averages ~4.5 characters per WordPiece token, so this
# leaves the exact cut to the embedding service's tokenizer for all but text of very long words.
CHARS_PER_TOKEN_BOUND = 8


@dataclass(frozen=True, slots=True)
class TextBudget:
    tokens: int  # model tokens per text, cut by the embedding service
    chars: int  # characters per text, cut here before sending


def char_budget(tokens: int, max_chars_per_text: int = 0) -> int:
    """Characters to send for a budget of ``tokens``, within the embedding service's own limit."""
    chars = max(tokens, 1) * CHARS_PER_TOKEN_BOUND
    return min(chars, max_chars_per_text) if max_chars_per_text > 0 else chars


@dataclass(frozen=True, slots=True)
class EmbedText:
    text: str
    # True when REQUEST_SUMMARY had no usable `request` facet and the first user message was used.
    fallback: bool = False


def collapse(text: str, budget: int) -> str:
    """Whitespace runs become one space; reads only as much of ``text`` as the budget can use."""
    # Collapsing never lengthens text, so twice the budget is plenty to fill it.
    return " ".join(text[: max(budget, 0) * 2 + 16].split())


def _first_user_message(messages: Sequence[Message]) -> Message | None:
    for message in messages:
        if message.role == Role.USER:
            return message
    return messages[0] if messages else None


def joined_text(messages: Sequence[Message], roles: frozenset[str], budget: int) -> str:
    """The messages of ``roles`` in order, each collapsed, joined by newlines, cut to ``budget``;
    the first message (user first) when none has one of ``roles``."""
    parts: list[str] = []
    used = 0
    for message in messages:
        if message.role not in roles:
            continue
        if used >= budget:
            break
        part = collapse(message.content, budget - used)
        if part:
            parts.append(part)
            used += len(part) + 1  # the newline that joins it
    if not parts:
        first = _first_user_message(messages)
        return truncate(collapse(first.content, budget), budget) if first else ""
    return truncate("\n".join(parts), budget)


def conversation_text(messages: Sequence[Message], budget: int) -> str:
    return joined_text(messages, CONVERSATION_ROLES, budget)


def user_messages_text(messages: Sequence[Message], budget: int) -> str:
    return joined_text(messages, USER_ROLE, budget)


def first_user_message_text(messages: Sequence[Message], budget: int) -> str:
    first = _first_user_message(messages)
    return truncate(collapse(first.content, budget), budget) if first else ""


def request_facet(facets: Sequence[FacetValue]) -> str:
    """The usable `request` facet text, or ""."""
    for value in facets:
        if value.facet == REQUEST_FACET and not value.failed and value.text:
            return value.text
    return ""


def embed_text(
    conversation: Conversation,
    mode: EmbedTextMode,
    budget: int,
    facets: Sequence[FacetValue] = (),
) -> EmbedText:
    """The text that represents ``conversation`` for embedding under ``mode``, at most ``budget`` chars
    (the embedding service then cuts it to the token budget)."""
    if mode is EmbedTextMode.CONVERSATION:
        return EmbedText(conversation_text(conversation.messages, budget))
    if mode is EmbedTextMode.USER_MESSAGES:
        return EmbedText(user_messages_text(conversation.messages, budget))
    if mode is EmbedTextMode.FIRST_USER_MESSAGE:
        return EmbedText(first_user_message_text(conversation.messages, budget))
    summary = request_facet(facets)
    if summary:
        text = truncate(collapse(summary, budget), budget)
        if text:
            return EmbedText(text)
    return EmbedText(first_user_message_text(conversation.messages, budget), fallback=True)


def naming_text(summary: str, messages: Sequence[Message], budget: int) -> str:
    """The short text the clustering service names clusters from: the request summary when there is
    one, else the first user message."""
    if summary:
        return truncate(collapse(summary, budget), budget)
    return first_user_message_text(messages, budget)
