"""What the pipeline needs from the facets, embedding and clustering services (no gRPC here).

``clients.py`` implements these over gRPC with deadlines, retries and circuit breakers and turns
every failure into ``DownstreamError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .models import ClusteringInput, ClusteringOutput, Conversation, FacetDefinition, FacetValue, PackedBatch


class DownstreamError(Exception):
    """A call to another service failed for good (after retries, or refused by an open breaker)."""

    def __init__(self, service: str, code: str, detail: str, *, circuit_open: bool = False) -> None:
        self.service = service
        self.code = code
        self.detail = detail
        self.circuit_open = circuit_open
        super().__init__(self.describe())

    @property
    def unavailable(self) -> bool:
        return self.circuit_open or self.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED")

    @property
    def status_code(self) -> str:
        """The status code name an analysis this error fails reports: UNAVAILABLE while a breaker is
        open, the downstream's own code otherwise (UNKNOWN when the call failed without one)."""
        if self.circuit_open:
            return "UNAVAILABLE"
        return self.code if self.code.isupper() else "UNKNOWN"

    def describe(self) -> str:
        if self.circuit_open:
            return f"{self.service} service unavailable (circuit breaker open): {self.detail}"
        if self.unavailable:
            return f"{self.service} service unavailable ({self.code}): {self.detail}"
        return f"{self.service} service failed ({self.code}): {self.detail}"


@dataclass(frozen=True, slots=True)
class EmbeddingModelInfo:
    model: str
    dim: int
    max_texts_per_request: int
    max_chars_per_text: int


@dataclass(frozen=True, slots=True)
class ClusteringLimits:
    """What the clustering service accepts (its GetLimits), so options are checked against the real
    limits rather than a copy in the gateway's settings."""

    max_k: int
    max_hierarchy_depth: int
    max_vectors: int


@dataclass(slots=True)
class EmbeddedBatch:
    vectors: PackedBatch
    model: str
    truncated: int


class FacetsClient(Protocol):
    async def list_facets(self) -> list[FacetDefinition]: ...

    async def providers(self) -> list[str]:
        """The facets service's provider chain, in failover order."""
        ...

    async def extract(
        self, conversations: Sequence[Conversation], facets: Sequence[str]
    ) -> list[list[FacetValue]]:
        """One list of values per conversation, in input order."""
        ...


class EmbeddingClient(Protocol):
    async def model_info(self) -> EmbeddingModelInfo: ...

    async def embed(self, texts: Sequence[str], max_tokens: int = 0, model: str = "") -> EmbeddedBatch:
        """One vector per text, in order, packed; each text cut at ``max_tokens`` model tokens; by
        ``model`` (the analysis's pinned embedding model) or the service refuses, when given."""
        ...


class ClusteringClient(Protocol):
    async def limits(self) -> ClusteringLimits: ...

    async def cluster(self, data: ClusteringInput) -> ClusteringOutput: ...


@dataclass(slots=True)
class Downstreams:
    facets: FacetsClient
    embedding: EmbeddingClient
    clustering: ClusteringClient
