"""Checks an extraction request before any work; every problem becomes a field violation.

Field paths follow the protobuf request: ``conversations``, ``conversations[3].id``,
``conversations[3].messages``, ``conversations[3].messages[2].content``, ``facets[1]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from briefxai_common.errors import InvalidArgument

from .definitions import Conversation, FacetCatalog

ROLES = frozenset({"user", "assistant", "system", "tool"})
MAX_ID_CHARS = 256
#: At most this many violations are reported (the first ones), so a huge bad request gets a small error.
MAX_VIOLATIONS = 50


@dataclass(frozen=True)
class Limits:
    max_conversations_per_request: int = 1000
    max_messages_per_conversation: int = 1000
    max_chars_per_message: int = 100_000


def request_violations(
    conversations: Sequence[Conversation], facet_names: Sequence[str], catalog: FacetCatalog, limits: Limits
) -> list[tuple[str, str]]:
    """``(field, description)`` for each problem, in request order; empty when the request is fine."""
    violations: list[tuple[str, str]] = []
    if not conversations:
        violations.append(("conversations", "at least one conversation is required"))
    elif len(conversations) > limits.max_conversations_per_request:
        violations.append(
            (
                "conversations",
                f"at most {limits.max_conversations_per_request} conversations per request "
                f"(got {len(conversations)}); split the batch",
            )
        )
    for i, name in enumerate(facet_names):
        if name not in catalog.by_name:
            known = ", ".join(catalog.by_name)
            violations.append((f"facets[{i}]", f"unknown facet {name[:64]!r}; known facets: {known}"))
    first_seen: dict[str, int] = {}
    for i, conversation in enumerate(conversations[: limits.max_conversations_per_request]):
        where = f"conversations[{i}]"
        if not conversation.id:
            violations.append((f"{where}.id", "must not be empty"))
        elif len(conversation.id) > MAX_ID_CHARS:
            violations.append(
                (f"{where}.id", f"at most {MAX_ID_CHARS} characters (got {len(conversation.id)})")
            )
        elif conversation.id in first_seen:
            violations.append(
                (
                    f"{where}.id",
                    f"duplicate id {conversation.id[:64]!r} (also conversations[{first_seen[conversation.id]}])",
                )
            )
        else:
            first_seen[conversation.id] = i
        if not conversation.messages:
            violations.append((f"{where}.messages", "at least one message is required"))
        elif len(conversation.messages) > limits.max_messages_per_conversation:
            violations.append(
                (
                    f"{where}.messages",
                    f"at most {limits.max_messages_per_conversation} messages (got {len(conversation.messages)})",
                )
            )
        for j, message in enumerate(conversation.messages[: limits.max_messages_per_conversation]):
            if message.role not in ROLES:
                violations.append(
                    (f"{where}.messages[{j}].role", "must be set to user, assistant, system or tool")
                )
            if len(message.content) > limits.max_chars_per_message:
                violations.append(
                    (
                        f"{where}.messages[{j}].content",
                        f"at most {limits.max_chars_per_message} characters (got {len(message.content)})",
                    )
                )
        if len(violations) >= MAX_VIOLATIONS:
            break
    return violations[:MAX_VIOLATIONS]


def validate_request(
    conversations: Sequence[Conversation], facet_names: Sequence[str], catalog: FacetCatalog, limits: Limits
) -> None:
    """Raises :class:`InvalidArgument` listing every violation (up to :data:`MAX_VIOLATIONS`)."""
    violations = request_violations(conversations, facet_names, catalog, limits)
    if violations:
        raise InvalidArgument.many(violations)
