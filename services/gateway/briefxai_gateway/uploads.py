"""Receiving an UploadAnalysis stream: checks each batch as it arrives and writes the conversations
to the store in chunks, so a large upload is never held in memory as a whole."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from briefxai_common.errors import InvalidArgument

from .concurrency import in_thread
from .intake import RequestedOptions
from .models import Conversation
from .redaction import redacted
from .settings import GatewayPrivacySettings
from .store import Store
from .validation import Limits, Violations, check_conversation_count, check_conversations

# Uploaded conversations are written to the store in chunks of at least this many.
UPLOAD_FLUSH = 1000


@dataclass(slots=True)
class UploadHeader:
    options: RequestedOptions
    request_id: str


UploadItem = UploadHeader | list[Conversation]


async def receive_conversations(
    store: Store,
    limits: Limits,
    analysis_id: str,
    items: AsyncIterator[UploadItem],
    privacy: GatewayPrivacySettings | None = None,
) -> int:
    """Validates, redacts (``privacy``) and stores the uploaded batches after the header; returns how
    many conversations arrived. Field paths count across the whole stream (``conversations[1500].id``
    is the 1501st)."""
    seen: set[str] = set()
    count = 0
    stored = 0
    pending: list[Conversation] = []
    async for item in items:
        if isinstance(item, UploadHeader):
            raise InvalidArgument("header", "only the first message of the stream may be the header")
        violations = Violations()
        if count + len(item) > limits.max_conversations:
            check_conversation_count(count + len(item), limits, violations, "conversations")
            violations.raise_if_any()
        await asyncio.to_thread(check_conversations, item, limits, violations, offset=count, seen_ids=seen)
        violations.raise_if_any()
        pending.extend(await redacted(item, privacy) if privacy is not None else item)
        count += len(item)
        if len(pending) >= UPLOAD_FLUSH:
            await in_thread(store.append_conversations, analysis_id, stored, pending)
            stored += len(pending)
            pending = []
    if pending:
        await in_thread(store.append_conversations, analysis_id, stored, pending)
        stored += len(pending)
    violations = Violations()
    check_conversation_count(count, limits, violations, "conversations")
    violations.raise_if_any()
    return count
