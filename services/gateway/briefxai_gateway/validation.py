"""Validation of what a client sends: conversations and analysis options.

Every problem becomes a field violation with a path such as ``conversations[3].messages[0].role``;
a request with any violation is refused as a whole (INVALID_ARGUMENT). At most
``MAX_REPORTED_VIOLATIONS`` are listed (the last one says how many more there were) so that the
error fits in gRPC trailing metadata.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from briefxai_common.errors import InvalidArgument

from .models import ROLES, AnalysisOptions, Conversation, EmbedTextMode
from .settings import AnalysisDefaults, GatewaySettings

MAX_REPORTED_VIOLATIONS = 20
MAX_DISPLAY_NAME_CHARS = 256
MAX_EMBED_TOKEN_BUDGET = 8192
MAX_REQUEST_ID_CHARS = 128
MAX_USER_ID_CHARS = 256
# Clustering needs at least two vectors.
MIN_CONVERSATIONS = 2


@dataclass(frozen=True, slots=True)
class Limits:
    max_conversations: int = 200_000
    max_messages: int = 1000
    max_message_chars: int = 100_000
    max_id_chars: int = 256
    max_k: int = 200
    max_hierarchy_depth: int = 6

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> Limits:
        return cls(
            max_conversations=settings.max_conversations_per_analysis,
            max_messages=settings.max_messages_per_conversation,
            max_message_chars=settings.max_message_chars,
            max_id_chars=settings.max_conversation_id_chars,
            max_k=settings.max_k,
            max_hierarchy_depth=settings.max_hierarchy_depth,
        )


class Violations:
    """Collects (field, description) pairs; counts the ones beyond the reporting cap."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self.dropped = 0

    def add(self, field: str, description: str) -> None:
        if len(self.items) < MAX_REPORTED_VIOLATIONS:
            self.items.append((field, description))
        else:
            self.dropped += 1

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if not self.items:
            return
        items = list(self.items)
        if self.dropped:
            items.append(("", f"... and {self.dropped} more violations not listed"))
        raise InvalidArgument.many(items)


def check_conversations(
    conversations: Sequence[Conversation],
    limits: Limits,
    violations: Violations,
    *,
    offset: int = 0,
    seen_ids: set[str] | None = None,
) -> None:
    """Checks one run of conversations whose first has index ``offset`` in the whole analysis.

    ``seen_ids`` carries ids across calls (client streaming); ids are added to it.
    """
    seen = seen_ids if seen_ids is not None else set()
    for index, conversation in enumerate(conversations, start=offset):
        path = f"conversations[{index}]"
        cid = conversation.id
        if not cid or not cid.strip():
            violations.add(f"{path}.id", "must be non-empty")
        elif len(cid) > limits.max_id_chars:
            violations.add(f"{path}.id", f"must be at most {limits.max_id_chars} characters")
        elif cid in seen:
            violations.add(f"{path}.id", f"duplicate conversation id {cid[:64]!r}")
        else:
            seen.add(cid)
        if len(conversation.user_id) > MAX_USER_ID_CHARS:
            violations.add(f"{path}.user_id", f"must be at most {MAX_USER_ID_CHARS} characters")
        messages = conversation.messages
        if not messages:
            violations.add(f"{path}.messages", "at least one message is required")
            continue
        if len(messages) > limits.max_messages:
            violations.add(f"{path}.messages", f"at most {limits.max_messages} messages per conversation")
            continue
        for m_index, message in enumerate(messages):
            m_path = f"{path}.messages[{m_index}]"
            if message.role not in ROLES:
                violations.add(f"{m_path}.role", "must be set (user, assistant, system or tool)")
            if not message.content or not message.content.strip():
                violations.add(f"{m_path}.content", "must be non-empty")
            elif len(message.content) > limits.max_message_chars:
                violations.add(f"{m_path}.content", f"must be at most {limits.max_message_chars} characters")


def check_conversation_count(count: int, limits: Limits, violations: Violations, field: str) -> None:
    if count < MIN_CONVERSATIONS:
        violations.add(
            field, f"at least {MIN_CONVERSATIONS} conversations are needed to cluster (got {count})"
        )
    elif count > limits.max_conversations:
        violations.add(field, f"at most {limits.max_conversations} conversations per analysis (got {count})")


def validate_conversations(conversations: Sequence[Conversation], limits: Limits) -> None:
    """Raises InvalidArgument listing every bad field of an inline conversation list."""
    violations = Violations()
    check_conversation_count(len(conversations), limits, violations, "conversations")
    if len(conversations) <= limits.max_conversations:
        check_conversations(conversations, limits, violations)
    violations.raise_if_any()


def check_request_id(request_id: str, violations: Violations, field: str = "request_id") -> None:
    if len(request_id) > MAX_REQUEST_ID_CHARS:
        violations.add(field, f"must be at most {MAX_REQUEST_ID_CHARS} characters")


def resolve_options(
    raw: AnalysisOptions,
    *,
    embed_text_set: bool,
    defaults: AnalysisDefaults,
    limits: Limits,
    known_facets: Iterable[str] | None,
    violations: Violations,
    prefix: str = "options",
) -> AnalysisOptions:
    """Checks the client's options and fills zeros from ``defaults``.

    ``known_facets`` is None when the facets service could not be asked; then names are not
    checked here (the analysis fails later if one is unknown). ``embed_text_set`` is False when
    the client left ``embed_text`` unspecified.
    """
    if raw.k > limits.max_k:
        violations.add(f"{prefix}.k", f"must be at most {limits.max_k} (0 = automatic)")
    if raw.hierarchy_depth > limits.max_hierarchy_depth:
        violations.add(
            f"{prefix}.hierarchy_depth", f"must be at most {limits.max_hierarchy_depth} (0 = default)"
        )
    if raw.embed_token_budget > MAX_EMBED_TOKEN_BUDGET:
        violations.add(
            f"{prefix}.embed_token_budget", f"must be at most {MAX_EMBED_TOKEN_BUDGET} (0 = default)"
        )
    if len(raw.display_name) > MAX_DISPLAY_NAME_CHARS:
        violations.add(f"{prefix}.display_name", f"must be at most {MAX_DISPLAY_NAME_CHARS} characters")
    facets = list(raw.facets) if raw.facets else list(defaults.facets)
    known = set(known_facets) if known_facets is not None else None
    seen: set[str] = set()
    for index, name in enumerate(raw.facets):
        field = f"{prefix}.facets[{index}]"
        if not name:
            violations.add(field, "must be non-empty")
        elif name in seen:
            violations.add(field, f"duplicate facet {name!r}")
        elif known is not None and name not in known:
            offered = ", ".join(sorted(known)) or "none"
            violations.add(field, f"unknown facet {name!r}; the facets service offers: {offered}")
        seen.add(name)
    embed_text = raw.embed_text if embed_text_set else defaults.embed_text
    return AnalysisOptions(
        facets=facets,
        k=raw.k or defaults.k,
        hierarchy_depth=raw.hierarchy_depth or defaults.hierarchy_depth,
        min_cluster_size=raw.min_cluster_size or defaults.min_cluster_size,
        min_distinct_users=raw.min_distinct_users or defaults.min_distinct_users,
        seed=raw.seed or defaults.seed,
        embed_text=embed_text,
        display_name=raw.display_name,
        embed_token_budget=raw.embed_token_budget or defaults.embed_token_budget,
    )


def facets_to_extract(options: AnalysisOptions) -> list[str]:
    """Facet names to ask for; empty = all. REQUEST_SUMMARY needs `request` even if not listed."""
    if not options.facets:
        return []
    names = list(options.facets)
    if options.embed_text is EmbedTextMode.REQUEST_SUMMARY and "request" not in names:
        names.append("request")
    return names
