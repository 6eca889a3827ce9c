"""The gateway's domain types: analyses, conversations, facet values, clustering results.

Plain dataclasses and enums; no gRPC or protobuf here. ``servicer.py`` and ``clients.py`` translate.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime

# The conversation types are the shared contract's; re-exported for the gateway's modules.
from briefxai_common.conversations import Conversation as Conversation
from briefxai_common.conversations import Message as Message

DEFAULT_TENANT = "default"


class AnalysisState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (AnalysisState.SUCCEEDED, AnalysisState.FAILED, AnalysisState.CANCELLED)


class Stage(enum.StrEnum):
    """Pipeline stages in order."""

    VALIDATE = "validate"
    FACETS = "facets"
    EMBED = "embed"
    CLUSTER = "cluster"
    STORE = "store"


STAGES: tuple[Stage, ...] = tuple(Stage)


class EmbedTextMode(enum.StrEnum):
    """Which text represents a conversation for embedding (see ``embed_text.py``)."""

    CONVERSATION = "conversation"
    USER_MESSAGES = "user_messages"
    FIRST_USER_MESSAGE = "first_user_message"
    REQUEST_SUMMARY = "request_summary"


class FacetType(enum.StrEnum):
    TEXT = "text"
    NUMBER = "number"
    ENUM = "enum"


@dataclass(frozen=True, slots=True)
class FacetDefinition:
    name: str
    type: FacetType
    min: float = 0.0
    max: float = 0.0
    choices: tuple[str, ...] = ()
    builtin: bool = False


@dataclass(slots=True)
class FacetValue:
    facet: str
    text: str | None = None
    number: float | None = None
    provider: str = ""
    reason: str = ""
    failed: bool = False
    error: str = ""


@dataclass(slots=True)
class RequestedOptions:
    """Options as the client sent them, before defaults: None where the client left a field unset."""

    facets: list[str] = field(default_factory=list)
    k: int | None = None
    hierarchy_depth: int | None = None
    min_cluster_size: int | None = None
    min_distinct_users: int | None = None
    seed: int | None = None
    embed_text: EmbedTextMode | None = None
    # False when the client sent an embed_text value this gateway does not know.
    embed_text_known: bool = True
    display_name: str = ""
    embed_token_budget: int | None = None


# Version 2 stores unset clustering options as null. Version 1 (no "version" key) stored 0 for them.
OPTIONS_JSON_VERSION = 2


@dataclass(slots=True)
class AnalysisOptions:
    """Options as resolved at creation (defaults applied); stored with the analysis.

    A clustering option that is None is left to the clustering service's own default (for ``k``: the
    automatic rule).
    """

    facets: list[str] = field(default_factory=list)
    k: int | None = None
    hierarchy_depth: int | None = None
    min_cluster_size: int | None = None
    min_distinct_users: int | None = None
    seed: int = 0
    embed_text: EmbedTextMode = EmbedTextMode.CONVERSATION
    display_name: str = ""
    # Tokens per embedded text; 0 on analyses stored before the option existed (the setting applies).
    embed_token_budget: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "version": OPTIONS_JSON_VERSION,
            "facets": list(self.facets),
            "k": self.k,
            "hierarchy_depth": self.hierarchy_depth,
            "min_cluster_size": self.min_cluster_size,
            "min_distinct_users": self.min_distinct_users,
            "seed": self.seed,
            "embed_text": self.embed_text.value,
            "display_name": self.display_name,
            "embed_token_budget": self.embed_token_budget,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> AnalysisOptions:
        facets = data.get("facets", [])
        legacy = "version" not in data
        return cls(
            facets=[str(f) for f in facets] if isinstance(facets, list) else [],
            k=_clustering_option(data.get("k"), legacy),
            hierarchy_depth=_clustering_option(data.get("hierarchy_depth"), legacy),
            min_cluster_size=_clustering_option(data.get("min_cluster_size"), legacy),
            min_distinct_users=_clustering_option(data.get("min_distinct_users"), legacy),
            seed=_int(data.get("seed")),
            embed_text=EmbedTextMode(str(data.get("embed_text", EmbedTextMode.CONVERSATION.value))),
            display_name=str(data.get("display_name", "")),
            embed_token_budget=_int(data.get("embed_token_budget")),
        )


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float | str) else 0


def _clustering_option(value: object, legacy: bool) -> int | None:
    """A stored clustering option; None is the service's default, as 0 was before version 2."""
    if value is None:
        return None
    number = _int(value)
    return None if legacy and number == 0 else number


@dataclass(frozen=True, slots=True)
class AnalysisFailure:
    """Why an analysis FAILED: a status code name (google.rpc.Code, for example ``UNAVAILABLE`` when a
    service stayed down, ``INVALID_ARGUMENT`` when a service refused the input, ``INTERNAL`` for a bug)
    and what happened."""

    code: str
    message: str


@dataclass(slots=True)
class StageProgress:
    stage: Stage
    done: int = 0
    total: int = 0


@dataclass(slots=True)
class Analysis:
    id: str
    tenant_id: str
    state: AnalysisState
    stage: Stage
    options: AnalysisOptions
    request_id: str
    conversation_count: int
    batch_size: int
    create_time: datetime
    update_time: datetime
    error: str = ""
    # Status code name of the failure; "" unless FAILED (or stored before codes were kept).
    error_code: str = ""
    warnings: list[str] = field(default_factory=list)
    progress: dict[Stage, StageProgress] = field(default_factory=dict)
    # Filled once clustering has run.
    k: int = 0
    k_rule: str = ""
    withheld_count: int = 0
    # The newest revision of the results (AssignConversations adds one each; 0: the analysis's own).
    results_revision: int = 0

    def stage_progress(self) -> list[StageProgress]:
        return [self.progress.get(stage, StageProgress(stage, 0, 0)) for stage in STAGES]


@dataclass(slots=True)
class PackedBatch:
    """Little-endian float32 vectors, row-major."""

    data: bytes
    dim: int
    count: int


@dataclass(slots=True)
class ClusterNode:
    id: str
    level: int
    parent_id: str
    child_ids: list[str]
    name: str
    description: str
    size: int
    distinct_users: int
    keywords: list[str]


@dataclass(slots=True)
class FacetDistribution:
    facet: str
    counts: dict[str, int]
    mean: float | None = None


@dataclass(slots=True)
class ClusterWithFacets:
    cluster: ClusterNode
    facets: list[FacetDistribution]


@dataclass(slots=True)
class AssignmentRow:
    ordinal: int
    conversation_id: str
    cluster_id: str
    withheld: bool
    x: float | None = None
    y: float | None = None


@dataclass(slots=True)
class ClusteringChunk:
    """The next vectors of a clustering input with their conversation ids, user ids and naming texts."""

    vectors: PackedBatch
    ids: list[str]
    user_ids: list[str]
    texts: list[str]


@dataclass(slots=True)
class ClusteringInput:
    """``count`` vectors, produced lazily in chunks: ``chunks()`` makes a fresh iterator from the first
    chunk each time it is called (a retried call starts over), so no one holds every vector at once."""

    count: int
    chunks: Callable[[], AsyncIterator[ClusteringChunk]]
    # None: the clustering service's default.
    k: int | None
    hierarchy_depth: int | None
    min_cluster_size: int | None
    min_distinct_users: int | None
    seed: int


@dataclass(slots=True)
class ClusteringOutput:
    clusters: list[ClusterNode]
    # One per input vector, in input order: (conversation_id, cluster_id, withheld).
    assignments: list[tuple[str, str, bool]]
    # conversation id -> (x, y), for reported conversations.
    points: dict[str, tuple[float, float]]
    k: int
    k_rule: str
    base_algorithm: str
    map_algorithm: str
    withheld_count: int


@dataclass(slots=True)
class ConversationResult:
    conversation_id: str
    facets: list[FacetValue]
    cluster_id: str
    withheld: bool
    point: tuple[float, float] | None
    # The results revision that added the conversation (0: the analysis's own) and, for added ones, the
    # distance to the nearest base centroid and whether that was past the threshold.
    revision: int = 0
    distance: float | None = None
    unassigned: bool = False


@dataclass(slots=True)
class ResultsPage:
    analysis: Analysis
    clusters: list[ClusterWithFacets]
    conversations: list[ConversationResult]
    next_page_token: str
    total_conversations: int
    withheld_conversations: int
    k: int
    k_rule: str
    revision: int = 0
    unassigned_conversations: int = 0


@dataclass(slots=True)
class WatchUpdate:
    analysis: Analysis
    # Items per second in the current stage; 0 when unknown.
    rate: float
    # Seconds left; negative when unknown.
    eta_seconds: float
