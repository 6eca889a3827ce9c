"""Clustering service settings: the ``clustering`` section of the YAML file, ``BRIEFXAI_CLUSTERING_*`` env.

Every ``ClusteringParams`` field that a request may leave at 0 has its server default here
(``default_*``); the limits (``max_*``) bound what a request may ask for.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from joblib import cpu_count
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from briefxai_common.config import BreakerSettings, LLMRetryPolicySettings, ServiceSettings
from briefxai_common.llm import LLMEndpointSettings


class NamerLLMSettings(LLMEndpointSettings):
    """The OpenAI-compatible chat API that names clusters when ``namer: llm`` (the shared endpoint
    settings, with defaults for naming, and how much of each cluster it is shown)."""

    timeout_seconds: float = Field(default=60.0, gt=0, description="Per HTTP request.")
    concurrency: int = Field(default=4, ge=1, le=256, description="Naming requests in flight at once.")
    max_output_tokens: int = Field(default=300, ge=32, description="max_tokens of each reply.")
    texts_per_cluster: int = Field(
        default=20,
        ge=1,
        le=200,
        description="Naming texts of a cluster's most central (reported) conversations in its prompt.",
    )
    contrast_clusters: int = Field(
        default=3, ge=0, le=10, description="Nearest other clusters of the same level shown for contrast."
    )
    contrast_texts: int = Field(
        default=3, ge=0, le=20, description="Texts shown of each contrasting base cluster."
    )
    max_text_chars: int = Field(default=300, ge=20, le=2000, description="Each text is cut to this.")
    seed: int = Field(default=0, description="Sent as the requests' seed (servers that sample honour it).")


class NamerRetryPolicies(BaseModel):
    """``retry_policies.llm_provider``: the LLM namer's requests (``llm.max_attempts`` and
    ``llm.backoff_*`` override it)."""

    model_config = ConfigDict(extra="forbid")

    llm_provider: LLMRetryPolicySettings = Field(
        default_factory=lambda: LLMRetryPolicySettings.model_validate({})
    )


class NamerBreakers(BaseModel):
    """``circuit_breakers.llm_provider``: the LLM namer's breaker (``briefxai_circuit_breaker_state{
    service="clustering",breaker="namer"}``)."""

    model_config = ConfigDict(extra="forbid")

    llm_provider: BreakerSettings = Field(default_factory=lambda: BreakerSettings.model_validate({}))


class ClusteringPrivacySettings(BaseModel):
    """``privacy``: what leaves the service."""

    model_config = ConfigDict(extra="forbid")

    redact_external: bool = Field(
        default=True,
        description="Replace PII and secrets in the naming texts by placeholders ([EMAIL], [SECRET]...) "
        "before they are sent to the LLM namer (namer: llm). Secrets and the words of fewer than "
        "min_distinct_users users are kept out of every namer's input whatever this says.",
    )


class ClusteringSettings(ServiceSettings):
    section: ClassVar[str] = "clustering"
    model_config = SettingsConfigDict(
        env_prefix="BRIEFXAI_CLUSTERING_", env_nested_delimiter="__", extra="forbid"
    )

    grpc_port: int = Field(default=50054, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    http_port: int = Field(default=9094, ge=0, le=65535, description="HTTP port for /metrics and /health.")
    max_message_mb: int = Field(
        default=400,
        ge=1,
        le=2047,
        description="Largest gRPC message: max_vectors (200,000) x 384 floats x 4 bytes is 307 MB, plus ids "
        "and texts.",
    )

    # -- request defaults (used where a ClusteringParams field is 0) ----------------------------------
    default_hierarchy_depth: int = Field(
        default=2, ge=0, description="Levels above the base level when params.hierarchy_depth is 0."
    )
    default_max_top_clusters: int = Field(
        default=10, ge=1, description="Target top-level cluster count when params.max_top_clusters is 0."
    )
    default_min_cluster_size: int = Field(
        default=5, ge=1, description="Privacy: conversations per reported cluster when params leave it 0."
    )
    default_min_distinct_users: int = Field(
        default=3, ge=1, description="Privacy: distinct users per reported cluster when params leave it 0."
    )
    merge_small_clusters: bool = Field(
        default=True,
        description="Merge base clusters under the privacy thresholds into the nearest passing cluster "
        "(centroid cosine); false withholds them instead.",
    )

    # -- limits ---------------------------------------------------------------------------------------
    max_vectors: int = Field(
        default=200_000,
        ge=2,
        description="Largest vectors.count accepted. The gateway fits a larger analysis on a seeded sample "
        "of this many and assigns the rest to the nearest base centroid: this bounds one job (and this "
        "service's memory), not an analysis.",
    )
    max_k: int = Field(
        default=200, ge=2, description="Upper bound of the automatic k and of an explicit params.k."
    )
    max_hierarchy_depth: int = Field(default=6, ge=0, description="Largest params.hierarchy_depth accepted.")
    max_concurrent_jobs: int = Field(
        default=1, ge=1, description="Clustering jobs computed at once (each uses every core it can)."
    )
    compute_threads: int = Field(
        default=1,
        ge=0,
        description="BLAS/OpenMP threads of one job; 0 = every CPU this process may use (affinity and "
        "cgroup CPU quota, via joblib.cpu_count). Default 1: on a shared 2-core machine two OpenMP threads "
        "made k-means 6x slower (spinning while descheduled); raise it on dedicated cores.",
    )
    max_queued_jobs: int = Field(
        default=8, ge=0, description="Jobs that may wait for a slot; more get RESOURCE_EXHAUSTED."
    )

    # -- base clusters (k-means) ----------------------------------------------------------------------
    minibatch_threshold: int = Field(
        default=20_000, ge=1, description="From this many vectors on, MiniBatchKMeans replaces KMeans."
    )
    kmeans_n_init: int = Field(default=1, ge=1, le=50, description="k-means++ restarts (KMeans).")
    minibatch_n_init: int = Field(default=1, ge=1, le=50, description="k-means++ restarts (MiniBatchKMeans).")
    minibatch_batch_size: int = Field(default=1024, ge=64, description="MiniBatchKMeans batch size.")
    kmeans_max_iter: int = Field(
        default=100, ge=1, description="Lloyd iterations (KMeans) or passes over the data (MiniBatchKMeans)."
    )

    # -- naming -----------------------------------------------------------------------------------------
    keywords_per_cluster: int = Field(default=8, ge=1, le=50, description="Keyword phrases reported.")
    name_keywords: int = Field(
        default=2, ge=1, le=6, description="Most keyword phrases joined into a cluster name (' · ')."
    )
    max_name_chars: int = Field(
        default=48,
        ge=8,
        le=200,
        description="A phrase after the first joins a name only while the name stays this short.",
    )
    naming_diversity: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Maximal marginal relevance weight of novelty when keyword phrases are picked: 0 ranks "
        "by relevance to the cluster alone, 1 by difference from the phrases already picked.",
    )
    max_quote_chars: int = Field(
        default=100, ge=0, description="Length of the central member's text quoted in a description."
    )

    naming_texts_per_cluster: int = Field(
        default=100,
        ge=1,
        description="Texts of the most central members of each base cluster that naming reads (each "
        "weighted by the conversations it stands for); bounds naming time on large inputs.",
    )

    namer: Literal["offline", "llm"] = Field(
        default="offline",
        description="offline: keyword phrases (no network); llm: names and two-sentence descriptions from "
        "the `llm` endpoint, the offline name standing in for a cluster the LLM could not name.",
    )
    llm: NamerLLMSettings = Field(default_factory=lambda: NamerLLMSettings())
    retry_policies: NamerRetryPolicies = Field(default_factory=lambda: NamerRetryPolicies.model_validate({}))
    circuit_breakers: NamerBreakers = Field(default_factory=lambda: NamerBreakers.model_validate({}))
    privacy: ClusteringPrivacySettings = Field(default_factory=lambda: ClusteringPrivacySettings())

    # -- 2-D map ----------------------------------------------------------------------------------------
    umap_min_points: int = Field(
        default=50, ge=3, description="Below this many reported conversations the map uses PCA, not UMAP."
    )
    umap_sample_size: int = Field(
        default=10_000,
        ge=50,
        description="UMAP is fitted on at most this many points (an even sample); the rest are placed by "
        "their nearest sampled neighbours.",
    )
    umap_n_neighbors: int = Field(default=15, ge=2, le=200, description="UMAP n_neighbors.")
    umap_n_epochs: int = Field(default=200, ge=10, description="UMAP optimisation epochs.")
    map_pca_dims: int = Field(
        default=50,
        ge=0,
        description="Vectors are reduced to this many PCA dimensions before the map's neighbour search "
        "and UMAP; 0 keeps the full dimension.",
    )
    warm_up_map: bool = Field(
        default=True,
        description="Compile UMAP's numba code on start (readiness waits for it) so the first request "
        "does not pay the JIT cost.",
    )

    def resolved_compute_threads(self) -> int:
        """``compute_threads``, or the CPUs this process may use (cgroup-quota aware) when it is 0."""
        return self.compute_threads if self.compute_threads > 0 else max(1, int(cpu_count()))
