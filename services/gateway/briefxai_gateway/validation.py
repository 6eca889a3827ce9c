"""Validation of what a client sends: conversations and analysis options.

Every problem becomes a field violation with a path such as ``conversations[3].messages[0].role``;
a request with any violation is refused as a whole (INVALID_ARGUMENT). Conversations follow the
shared contract in :mod:`briefxai_common.conversations` (also applied by the facets service and the
CLI), which caps the listed violations at ``MAX_REPORTED_VIOLATIONS``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from briefxai_common import conversations as contract
from briefxai_common.conversations import (
    MAX_REPORTED_VIOLATIONS,
    NUL,
    NUL_MESSAGE,
    ConversationLimits,
    Violations,
    check_conversations,
)

from .downstream import ClusteringLimits
from .models import AnalysisOptions, Conversation, EmbedTextMode, RequestedOptions
from .settings import AnalysisDefaults, GatewaySettings

__all__ = [
    "MAX_REPORTED_VIOLATIONS",
    "MIN_CONVERSATIONS",
    "Limits",
    "Violations",
    "check_conversation_count",
    "check_conversations",
    "check_request_id",
    "facets_to_extract",
    "resolve_options",
    "validate_conversations",
]

MAX_DISPLAY_NAME_CHARS = 256
MAX_EMBED_TOKEN_BUDGET = 8192
MAX_REQUEST_ID_CHARS = 128
# Clustering needs at least two vectors.
MIN_CONVERSATIONS = 2


@dataclass(frozen=True, slots=True)
class Limits(ConversationLimits):
    """The conversation limits of the gateway's settings (options are checked against the clustering
    service's own limits, asked with GetLimits)."""

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> Limits:
        return cls(
            max_conversations=settings.max_conversations_per_analysis,
            max_messages=settings.max_messages_per_conversation,
            max_message_chars=settings.max_message_chars,
            max_id_chars=settings.max_conversation_id_chars,
        )


def check_conversation_count(count: int, limits: Limits, violations: Violations, field: str) -> None:
    contract.check_conversation_count(count, limits, violations, field, MIN_CONVERSATIONS)


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
    elif NUL in request_id:
        violations.add(field, NUL_MESSAGE)


def resolve_options(
    raw: RequestedOptions,
    *,
    defaults: AnalysisDefaults,
    clustering_limits: ClusteringLimits | None,
    known_facets: Iterable[str] | None,
    violations: Violations,
    prefix: str = "options",
) -> AnalysisOptions:
    """Checks the client's options and fills the unset ones from ``defaults``.

    ``clustering_limits`` and ``known_facets`` are None when the clustering or facets service could
    not be asked; then k, the depth and facet names are checked by those services when the analysis
    runs (it fails with their INVALID_ARGUMENT).
    """
    _check_clustering_options(raw, clustering_limits, violations, prefix)
    if raw.embed_token_budget is not None and not 1 <= raw.embed_token_budget <= MAX_EMBED_TOKEN_BUDGET:
        violations.add(
            f"{prefix}.embed_token_budget",
            f"must be 1..{MAX_EMBED_TOKEN_BUDGET}; leave unset for the default",
        )
    if not raw.embed_text_known:
        violations.add(f"{prefix}.embed_text", "unknown value")
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
    return AnalysisOptions(
        facets=facets,
        k=_or_default(raw.k, defaults.k),
        hierarchy_depth=_or_default(raw.hierarchy_depth, defaults.hierarchy_depth),
        min_cluster_size=_or_default(raw.min_cluster_size, defaults.min_cluster_size),
        min_distinct_users=_or_default(raw.min_distinct_users, defaults.min_distinct_users),
        seed=defaults.seed if raw.seed is None else raw.seed,
        embed_text=raw.embed_text or defaults.embed_text,
        display_name=raw.display_name,
        embed_token_budget=raw.embed_token_budget or defaults.embed_token_budget,
    )


def _check_clustering_options(
    raw: RequestedOptions, limits: ClusteringLimits | None, violations: Violations, prefix: str
) -> None:
    if raw.k is not None:
        top = f"{limits.max_k} (the clustering service's max_k)" if limits is not None else "max_k"
        if raw.k < 2 or (limits is not None and raw.k > limits.max_k):
            violations.add(f"{prefix}.k", f"must be 2..{top}; leave unset for the automatic rule")
    if (
        raw.hierarchy_depth is not None
        and limits is not None
        and raw.hierarchy_depth > limits.max_hierarchy_depth
    ):
        violations.add(
            f"{prefix}.hierarchy_depth",
            f"must be at most {limits.max_hierarchy_depth} (the clustering service's max_hierarchy_depth)",
        )
    for name in ("min_cluster_size", "min_distinct_users"):
        value = getattr(raw, name)
        if value is not None and value < 1:
            violations.add(f"{prefix}.{name}", "must be at least 1; leave unset for the default")


def _or_default(value: int | None, default: int | None) -> int | None:
    return default if value is None else value


def facets_to_extract(options: AnalysisOptions) -> list[str]:
    """Facet names to ask for; empty = all. REQUEST_SUMMARY needs `request` even if not listed."""
    if not options.facets:
        return []
    names = list(options.facets)
    if options.embed_text is EmbedTextMode.REQUEST_SUMMARY and "request" not in names:
        names.append("request")
    return names
