"""Gateway settings: YAML section ``gateway`` with ``BRIEFXAI_GATEWAY_*`` environment overrides.

Nested keys use ``__``: ``BRIEFXAI_GATEWAY_CIRCUIT_BREAKERS__FACETS__FAILURE_THRESHOLD=3``,
``BRIEFXAI_GATEWAY_DEFAULTS__EMBED_TEXT=first_user_message``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from briefxai_common.channels import channel_target
from briefxai_common.config import (
    BreakerSettings,
    PerformanceSettings,
    RetryPolicySettings,
    ServiceSettings,
    StoreRetryPolicySettings,
)

from .models import EmbedTextMode
from .security_settings import AuditSettings, AuthSettings, RetentionSettings


class GatewayRetryPolicies(BaseModel):
    """The gateway's retry policies (the top-level ``retry_policies:`` block's entries of these names):
    its calls to each worker service, and its store."""

    model_config = ConfigDict(extra="forbid")

    embedding: RetryPolicySettings = Field(default_factory=lambda: RetryPolicySettings.model_validate({}))
    facets: RetryPolicySettings = Field(default_factory=lambda: RetryPolicySettings.model_validate({}))
    clustering: RetryPolicySettings = Field(default_factory=lambda: RetryPolicySettings.model_validate({}))
    store: StoreRetryPolicySettings = Field(
        default_factory=lambda: StoreRetryPolicySettings.model_validate({})
    )


class GatewayBreakers(BaseModel):
    """One circuit breaker per worker service (the top-level ``circuit_breakers:`` block's entries)."""

    model_config = ConfigDict(extra="forbid")

    embedding: BreakerSettings = Field(default_factory=lambda: BreakerSettings.model_validate({}))
    facets: BreakerSettings = Field(default_factory=lambda: BreakerSettings.model_validate({}))
    clustering: BreakerSettings = Field(default_factory=lambda: BreakerSettings.model_validate({}))


class GatewayPerformanceSettings(PerformanceSettings):
    """Every service's ``performance`` block plus the history behind GetPerformanceReport
    (``sampler.py``, ``performance.py``)."""

    sample_seconds: float = Field(
        60.0, gt=0, description="Seconds between samples of the gateway's memory and RPC latencies."
    )
    retention_hours: float = Field(
        168.0, gt=0, description="Samples and analysis timings older than this are deleted."
    )


class AnalysisDefaults(BaseModel):
    """Values used where a request leaves an option unset; an unset clustering option here (null) is
    left to the clustering service's own default."""

    model_config = ConfigDict(extra="forbid")

    facets: list[str] = Field(default_factory=list, description="Facets to extract; empty = all offered.")
    k: int | None = Field(
        None, ge=2, description="Base clusters; null = the clustering service's automatic rule."
    )
    hierarchy_depth: int | None = Field(
        None, ge=0, description="Levels above the base (0: base only); null = the clustering default."
    )
    min_cluster_size: int | None = Field(
        None, ge=1, description="null = the clustering service's privacy default."
    )
    min_distinct_users: int | None = Field(
        None, ge=1, description="null = the clustering service's privacy default."
    )
    seed: int = Field(0, ge=0, lt=2**64, description="Seed used when a request leaves it unset.")
    embed_text: EmbedTextMode = Field(
        EmbedTextMode.CONVERSATION, description="Text embedded per conversation."
    )
    embed_token_budget: int = Field(
        64,
        ge=8,
        le=8192,
        description="Tokens of the embedding model that represent a conversation (its unit of cost); "
        "64 scored best on real chats (docs/quality.md).",
    )


class GatewayPrivacySettings(BaseModel):
    """``privacy``: conversation text is redacted as it arrives, before it is stored or sent anywhere."""

    model_config = ConfigDict(extra="forbid")

    redact_stored_text: Literal["off", "secrets", "all"] = Field(
        default="secrets",
        description="Message content of created, uploaded and assigned conversations is redacted before "
        "it is stored (so before facets, embedding, clustering and every export see it): 'secrets' "
        "replaces API keys, tokens, passwords and private keys by [SECRET]; 'all' also replaces personal "
        "data ([EMAIL], [PHONE], [CARD], [NAME]...); 'off' stores the text as sent.",
    )
    phone_region: str = Field(
        default="US",
        min_length=2,
        max_length=2,
        description="Region of phone numbers written without a country code (redact_stored_text: all).",
    )


class GatewaySettings(ServiceSettings):
    section: ClassVar[str] = "gateway"
    model_config = SettingsConfigDict(
        env_prefix="BRIEFXAI_GATEWAY_", env_nested_delimiter="__", extra="forbid"
    )

    grpc_port: int = Field(50051, ge=0, le=65535)
    http_port: int = Field(9091, ge=0, le=65535)
    max_message_mb: int = Field(
        400,
        ge=1,
        le=2047,
        description="Largest gRPC message; the one clustering call carries every vector (200k x 384 = 307 MB).",
    )

    store_url: str = Field(
        "sqlite:///./briefxai-data/gateway.db",
        description="SQLAlchemy URL. SQLite (file, WAL mode; its folder is created; one gateway) or "
        "PostgreSQL, postgresql://user:password@host:5432/db (driver psycopg 3: the gateway's postgresql "
        "extra), which several gateways may share.",
    )
    tenant_id: str = Field(
        "default",
        min_length=1,
        max_length=64,
        description="The operator tenant: the bootstrap admin key's, and every caller's with auth.mode off.",
    )
    auth: AuthSettings = Field(default_factory=lambda: AuthSettings.model_validate({}))
    audit: AuditSettings = Field(default_factory=lambda: AuditSettings.model_validate({}))
    retention: RetentionSettings = Field(default_factory=lambda: RetentionSettings.model_validate({}))
    analysis_lease_seconds: float = Field(
        30.0,
        gt=0,
        description="A running analysis is leased to its gateway this long past its last heartbeat; a "
        "gateway that died holds it no longer than that, then another resumes it from its checkpoints.",
    )
    analysis_heartbeat_seconds: float = Field(
        10.0,
        gt=0,
        description="How often a gateway renews the leases of its running analyses and looks for analyses "
        "nobody holds; less than analysis_lease_seconds (a third of it leaves two heartbeats to spare).",
    )

    @field_validator("analysis_heartbeat_seconds")
    @classmethod
    def _heartbeat_within_lease(cls, value: float, info: ValidationInfo) -> float:
        lease = info.data.get("analysis_lease_seconds")
        if lease is not None and value >= lease:
            raise ValueError(
                f"must be less than analysis_lease_seconds ({lease:g}): leases would run out between renewals"
            )
        return value

    embedding_address: str = Field(
        "localhost:50052",
        description="host:port; or replicas, round robin over those SERVING: dns:///host:port (every "
        "address of a headless Service) or a list of IP literals, ipv4:10.0.0.1:50052,10.0.0.2:50052.",
    )
    facets_address: str = Field("localhost:50053", description="As embedding_address.")
    clustering_address: str = Field("localhost:50054", description="As embedding_address.")

    @field_validator("embedding_address", "facets_address", "clustering_address")
    @classmethod
    def _resolvable_target(cls, value: str) -> str:
        """The gRPC target every channel to it uses (a bare list of IP literals gets ``ipv4:``); a list
        gRPC cannot resolve fails here, at load, not at the first call."""
        return channel_target(value)

    embedding_deadline_seconds: float = Field(120.0, gt=0, description="Deadline of one EmbedTexts call.")
    facets_deadline_seconds: float = Field(120.0, gt=0, description="Deadline of one ExtractFacets call.")
    clustering_deadline_seconds: float = Field(1800.0, gt=0, description="Deadline of the clustering call.")
    metadata_deadline_seconds: float = Field(
        10.0, gt=0, description="ListFacets / GetModelInfo / GetLimits deadline."
    )
    embedding_max_concurrent_calls: int = Field(
        2,
        ge=1,
        description="EmbedTexts calls in flight at once (more only queue at the server; raise with replicas).",
    )
    facets_max_concurrent_calls: int = Field(2, ge=1, description="ExtractFacets calls in flight at once.")
    clustering_max_concurrent_calls: int = Field(
        1, ge=1, description="Clustering calls (StreamClusterEmbeddings) in flight at once."
    )

    batch_size: int = Field(256, ge=1, le=4096, description="Conversations per facets/embedding batch.")
    max_inflight_batches: int = Field(4, ge=1, le=64, description="Batches in flight per analysis.")

    max_conversations_per_analysis: int = Field(
        1_000_000,
        ge=1,
        description="Past the clustering service's max_vectors the clusters are fitted on a seeded sample "
        "and the rest assigned to their nearest base centroid (docs/scaling.md: 1M measured).",
    )
    max_messages_per_conversation: int = Field(1000, ge=1)
    max_message_chars: int = Field(100_000, ge=1, description="Characters per message content.")
    max_conversation_id_chars: int = Field(256, ge=1, le=256, description="At most the id columns' 256.")

    max_concurrent_analyses: int = Field(2, ge=1, description="Analyses running at once.")
    max_queued_analyses: int = Field(
        16, ge=0, description="PENDING analyses waiting; more = RESOURCE_EXHAUSTED."
    )

    retry_policies: GatewayRetryPolicies = Field(
        default_factory=lambda: GatewayRetryPolicies.model_validate({})
    )
    circuit_breakers: GatewayBreakers = Field(default_factory=lambda: GatewayBreakers.model_validate({}))
    performance: GatewayPerformanceSettings = Field(
        default_factory=lambda: GatewayPerformanceSettings.model_validate({})
    )

    naming_text_chars: int = Field(300, ge=16, description="Characters per text sent for cluster naming.")
    assign_max_distance: float | None = Field(
        None,
        gt=0,
        le=2,
        description="AssignConversations: cosine distance to the nearest base centroid past which a new "
        "conversation is unassigned; null = the analysis's own members' assign_distance_percentile.",
    )
    assign_distance_percentile: float = Field(
        99.0,
        gt=0,
        le=100,
        description="With assign_max_distance null: the percentile of the distances of the analysis's own "
        "members to their own centroid that is the threshold (99: a new conversation like the analysed "
        "ones is left unassigned about 1% of the time).",
    )
    defaults: AnalysisDefaults = Field(default_factory=lambda: AnalysisDefaults.model_validate({}))

    watch_poll_seconds: float = Field(
        2.0, gt=0, description="WatchAnalysis re-reads the store at least this often (other replicas)."
    )
    metadata_cache_seconds: float = Field(
        60.0,
        ge=0,
        description="How long answers of ListFacets (facet names, the facets service's limits) and "
        "GetLimits (the clustering service's limits) are reused.",
    )
    outage_budget_seconds: float = Field(
        600.0,
        ge=0,
        description="How long an analysis waits for a downstream service that is down (UNAVAILABLE after "
        "its retries, or its breaker open) to come back before it FAILS with UNAVAILABLE; each outage "
        "gets the whole budget. 0: fail at once. Reloaded on SIGHUP.",
    )
    privacy: GatewayPrivacySettings = Field(
        default_factory=lambda: GatewayPrivacySettings(),
        description="What is kept of conversation text: redaction before it is stored.",
    )
