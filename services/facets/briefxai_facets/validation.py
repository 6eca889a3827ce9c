"""Checks an extraction request before any work; every problem becomes a field violation.

Field paths follow the protobuf request: ``conversations``, ``conversations[3].id``,
``conversations[3].messages``, ``conversations[3].messages[2].content``, ``facets[1]``.
Conversations follow the shared contract (:mod:`briefxai_common.conversations`), the same the
gateway applies; only the facet names and the per-request count limit are this service's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from briefxai_common.conversations import (
    ConversationLimits,
    Violations,
    check_conversation_count,
    check_conversations,
)

from .definitions import Conversation, FacetCatalog


@dataclass(frozen=True)
class Limits:
    max_conversations_per_request: int = 1000
    max_messages_per_conversation: int = 1000
    max_chars_per_message: int = 100_000

    def conversation_limits(self) -> ConversationLimits:
        return ConversationLimits(
            max_conversations=self.max_conversations_per_request,
            max_messages=self.max_messages_per_conversation,
            max_message_chars=self.max_chars_per_message,
        )


def request_violations(
    conversations: Sequence[Conversation], facet_names: Sequence[str], catalog: FacetCatalog, limits: Limits
) -> Violations:
    """Every problem, in request order; empty (false) when the request is fine."""
    violations = Violations()
    conversation_limits = limits.conversation_limits()
    check_conversation_count(len(conversations), conversation_limits, violations, "conversations", 1)
    for i, name in enumerate(facet_names):
        if name not in catalog.by_name:
            known = ", ".join(catalog.by_name)
            violations.add(f"facets[{i}]", f"unknown facet {name[:64]!r}; known facets: {known}")
    check_conversations(
        conversations[: limits.max_conversations_per_request], conversation_limits, violations
    )
    return violations


def validate_request(
    conversations: Sequence[Conversation], facet_names: Sequence[str], catalog: FacetCatalog, limits: Limits
) -> None:
    """Raises :class:`~briefxai_common.errors.InvalidArgument` listing the violations (capped)."""
    request_violations(conversations, facet_names, catalog, limits).raise_if_any()
