"""Redaction of conversation text as it arrives (``privacy.redact_stored_text``).

Applied once, after validation and before the conversations are stored (create, each upload batch,
AssignConversations), so the store, the workers, the logs and every export only ever hold the redacted
text: ``secrets`` replaces credentials by ``[SECRET]`` (:func:`briefxai_common.pii.redact_secrets`),
``all`` also personal details by their placeholders (:func:`briefxai_common.pii.redact`), ``off`` keeps
the text as sent. Ids, user ids and metadata are not touched. Redaction is a pure function of the text,
so the same input still gives the same analysis.

:func:`withheld_view` is the export side: the results of a conversation withheld by the privacy
thresholds carry no free text of it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Literal

from briefxai_common.pii import redact, redact_secrets

from .models import Conversation, ConversationResult, FacetDefinition, FacetType, FacetValue, Message
from .settings import GatewayPrivacySettings

StoredTextRedaction = Literal["off", "secrets", "all"]
CODE_FACETS = frozenset({"language"})  # text facets whose values are codes, not the conversation's words


def text_redactor(mode: StoredTextRedaction, phone_region: str = "US") -> Callable[[str], str] | None:
    """What ``mode`` does to one message's content; None for ``off``."""
    if mode == "off":
        return None
    if mode == "secrets":
        return redact_secrets
    return partial(redact, default_region=phone_region)


def stored_text_redactor(settings: GatewayPrivacySettings) -> Callable[[str], str] | None:
    return text_redactor(settings.redact_stored_text, settings.phone_region)


async def redacted(
    conversations: Sequence[Conversation], settings: GatewayPrivacySettings
) -> Sequence[Conversation]:
    """:func:`redact_conversations` with the configured redaction, off the event loop."""
    redactor = stored_text_redactor(settings)
    if redactor is None or not conversations:
        return conversations
    return await asyncio.to_thread(redact_conversations, conversations, redactor)


def redact_conversations(
    conversations: Sequence[Conversation], redactor: Callable[[str], str] | None
) -> Sequence[Conversation]:
    """``conversations`` with every message's content redacted (new objects; the input is not changed)."""
    if redactor is None:
        return conversations
    return [
        Conversation(
            id=conversation.id,
            user_id=conversation.user_id,
            messages=[Message(m.role, redactor(m.content)) for m in conversation.messages],
            metadata=conversation.metadata,
        )
        for conversation in conversations
    ]


def withheld_view(
    conversations: Sequence[ConversationResult], definitions: Sequence[FacetDefinition]
) -> list[ConversationResult]:
    """``conversations`` as exported: a withheld conversation (its group failed the privacy thresholds)
    keeps its number and choice facets but loses every free-text value (``request``, custom text facets)
    and every reason, which would quote what it said; reported ones are unchanged."""
    types = {definition.name: definition.type for definition in definitions}
    return [
        dataclasses.replace(item, facets=[_without_reason(v) for v in item.facets if _kept(v, types)])
        if item.withheld
        else item
        for item in conversations
    ]


def _kept(value: FacetValue, types: Mapping[str, FacetType]) -> bool:
    if value.text is None:
        return True
    return types.get(value.facet) is FacetType.ENUM or value.facet in CODE_FACETS


def _without_reason(value: FacetValue) -> FacetValue:
    return dataclasses.replace(value, reason="") if value.reason else value
