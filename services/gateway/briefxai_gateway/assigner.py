"""AssignConversations: new conversations into a SUCCEEDED analysis, as a new revision of its results.

1. Checks, before any work: the request id, the analysis (NOT_FOUND; FAILED_PRECONDITION unless it has
   SUCCEEDED), the conversations under the same contract and limits as CreateAnalysis (at least one;
   their ids unique and new to the analysis; the analysis's total within max_conversations).
   A request id already used on this analysis returns that call's answer: no work, no new revision.
2. Facets and embeddings through the facets and embedding services, batch by batch as the pipeline
   makes them (``batching.py``): the analysis's facets, embedded text and token budget.
3. The nearest base cluster of each by cosine distance to the base clusters' centroids
   (``centroids.py``: computed once per analysis from its stored vectors and assignments, then stored
   and cached), unassigned past the threshold (``assign_max_distance``, or the analysis's own members'
   ``assign_distance_percentile``).
4. The next revision (``revisions.py``: counts and distributions, the privacy threshold on what each
   revision adds) written in one transaction (``store/revisions.py``).

Steps 3 and 4 are *the assignment and store step*, timed as ``briefxai_stage_seconds{stage="assign"}``
(once per call; the one-off centroid computation as ``stage="centroids"``). Calls on one analysis run
that step one at a time in a process (a lock per analysis) and, across replicas, the store's revision
check makes the later writer compute again from the newer revision.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from briefxai_common import conversations as contract
from briefxai_common import tracing
from briefxai_common.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ServiceError,
    Unavailable,
)
from briefxai_common.logging import get_logger

from . import metrics
from .batching import FacetValues, bounded, facets_and_embedding, text_budget, texts_to_embed
from .centroids import CentroidBuilder, Centroids
from .concurrency import in_thread
from .downstream import DownstreamError, Downstreams
from .embed_text import TextBudget
from .models import Analysis, AnalysisState, Conversation, FacetDefinition, PackedBatch
from .redaction import redacted
from .revisions import (
    FALLBACK_MIN_CLUSTER_SIZE,
    FALLBACK_MIN_DISTINCT_USERS,
    AssignOutcome,
    Member,
    PrivacyRule,
    RevisionState,
    next_revision,
    user_key,
)
from .settings import GatewaySettings
from .store import DuplicateRequestId, RevisionConflict, Store
from .validation import Limits, Violations, check_request_id, facets_to_extract

log = get_logger(__name__)
tracer = trace.get_tracer(__name__)

ASSIGN_STAGE = "assign"
CENTROIDS_STAGE = "centroids"
# Vectors read at a time while computing the centroids.
CENTROID_CHUNK = 8192
# Analyses whose centroids and newest revision are kept in memory.
CACHED_ANALYSES = 4
# Revisions written by others in between before a call gives up (UNAVAILABLE, retryable).
MAX_CONFLICTS = 3


class DownstreamFailed(ServiceError):
    """A downstream service refused the new conversations: its own status code and message."""

    def __init__(self, error: DownstreamError) -> None:
        super().__init__(error.describe())
        self.code_name = error.status_code


def _rpc_error(error: DownstreamError) -> ServiceError:
    if error.unavailable:
        return Unavailable(
            error.describe(), reason="DOWNSTREAM_UNAVAILABLE", metadata={"service": error.service}
        )
    return DownstreamFailed(error)


def privacy_rule(analysis: Analysis) -> PrivacyRule:
    """The analysis's thresholds; where it left one to the clustering service, that service's default."""
    options = analysis.options
    return PrivacyRule(
        options.min_cluster_size or FALLBACK_MIN_CLUSTER_SIZE,
        options.min_distinct_users or FALLBACK_MIN_DISTINCT_USERS,
    )


@dataclass(slots=True)
class _Cached:
    centroids: Centroids | None = None
    state: RevisionState | None = None


@dataclass(slots=True)
class _Enriched:
    values: FacetValues
    vectors: PackedBatch
    model: str


class Assigner:
    def __init__(self, settings: GatewaySettings, store: Store, clients: Downstreams, limits: Limits) -> None:
        self.settings = settings
        self.store = store
        self.clients = clients
        self.limits = limits
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def forget(self, analysis_id: str) -> None:
        """Drops what is cached of a deleted analysis."""
        self._cache.pop(analysis_id, None)

    # -- the call ----------------------------------------------------------------------------------

    async def assign(
        self, analysis: Analysis, conversations: Sequence[Conversation], request_id: str
    ) -> AssignOutcome:
        """Assigns ``conversations`` to ``analysis`` (as read just now) in a new revision of its results."""
        violations = Violations()
        check_request_id(request_id, violations)
        violations.raise_if_any()
        if request_id:
            replay = await self._replay(analysis.id, request_id)
            if replay is not None:
                return replay
        if analysis.state is not AnalysisState.SUCCEEDED:
            raise FailedPrecondition(
                f"analysis {analysis.id!r} is {analysis.state.value.upper()}; conversations can be "
                "assigned once it has SUCCEEDED"
            )
        await self._check(analysis, conversations, violations)
        violations.raise_if_any()
        conversations = await redacted(conversations, self.settings.privacy)
        attributes: dict[str, AttributeValue] = {
            tracing.ANALYSIS_ID: analysis.id,
            "briefxai.assign.conversations": len(conversations),
        }
        with tracer.start_as_current_span("assign", attributes=attributes) as span:
            enriched = await self._facets_and_vectors(analysis, conversations)
            async with self._serialized(analysis.id):
                centroids = await self._centroids(analysis)
                if enriched.model and centroids.model and enriched.model != centroids.model:
                    raise FailedPrecondition(
                        f"the analysis was embedded with {centroids.model!r} but the embedding service now "
                        f"runs {enriched.model!r}: distances between the two would mean nothing"
                    )
                if enriched.vectors.count and enriched.vectors.dim != centroids.dim:
                    raise FailedPrecondition(
                        f"the embedding service returned {enriched.vectors.dim}-d vectors; the analysis's "
                        f"are {centroids.dim}-d"
                    )
                began = time.perf_counter()
                outcome, state = await in_thread(
                    self._assign_and_store,
                    analysis,
                    conversations,
                    enriched,
                    centroids,
                    self._entry(analysis.id).state,
                    request_id,
                )
                seconds = time.perf_counter() - began
                if state is not None:
                    self._entry(analysis.id).state = state
            span.set_attributes(
                {
                    "briefxai.assign.revision": outcome.revision,
                    "briefxai.assign.unassigned": outcome.unassigned_count,
                    "briefxai.assign.withheld": outcome.withheld_count,
                }
            )
        if state is not None:
            metrics.observe_stage(ASSIGN_STAGE, seconds)
            metrics.CONVERSATIONS_PROCESSED.labels(stage=ASSIGN_STAGE).inc(len(conversations))
        log.info(
            "conversations_assigned",
            analysis_id=analysis.id,
            revision=outcome.revision,
            conversations=len(conversations),
            unassigned=outcome.unassigned_count,
            withheld=outcome.withheld_count,
            released=outcome.released_count,
            seconds=round(seconds, 4),
        )
        return outcome

    async def _replay(self, analysis_id: str, request_id: str) -> AssignOutcome | None:
        revision = await in_thread(self.store.find_revision, analysis_id, request_id)
        if revision is None:
            return None
        return await in_thread(self.store.assign_outcome, analysis_id, revision)

    async def _check(
        self, analysis: Analysis, conversations: Sequence[Conversation], violations: Violations
    ) -> None:
        """The contract of CreateAnalysis, with ids new to the analysis and its total within the limit."""
        count = len(conversations)
        contract.check_conversation_count(count, self.limits, violations, "conversations", 1)
        if count > self.limits.max_conversations:
            return
        known = await in_thread(self.store.conversation_ids, analysis.id)
        if len(known) + count > self.limits.max_conversations:
            violations.add(
                "conversations",
                f"the analysis holds {len(known)} conversations; with {count} more it would exceed "
                f"max_conversations ({self.limits.max_conversations})",
            )
        await asyncio.to_thread(contract.check_conversations, conversations, self.limits, violations)
        for index, conversation in enumerate(conversations):
            if conversation.id in known:
                violations.add(
                    f"conversations[{index}].id",
                    f"conversation id {conversation.id[:64]!r} is already in the analysis",
                )

    # -- facets and embeddings ---------------------------------------------------------------------

    async def _facets_and_vectors(
        self, analysis: Analysis, conversations: Sequence[Conversation]
    ) -> _Enriched:
        """Facet values and vectors of every conversation, in order, made as the pipeline makes them."""
        try:
            info = await self.clients.embedding.model_info()
            budget = text_budget(analysis.options, self.settings.defaults.embed_token_budget, info)
            return await self._batches(analysis, conversations, budget)
        except DownstreamError as exc:
            raise _rpc_error(exc) from exc

    async def _batches(
        self, analysis: Analysis, conversations: Sequence[Conversation], budget: TextBudget
    ) -> _Enriched:
        size = max(1, analysis.batch_size or self.settings.batch_size)
        names = facets_to_extract(analysis.options)
        mode = analysis.options.embed_text
        values: FacetValues = [[] for _ in conversations]
        parts: dict[int, PackedBatch] = {}
        models: list[str] = []

        async def one(batch: int) -> None:
            start = batch * size
            chunk = conversations[start : start + size]

            async def facets() -> FacetValues:
                extracted = await self.clients.facets.extract(chunk, names)
                values[start : start + len(chunk)] = extracted
                return extracted

            async def embed(batch_values: FacetValues | None) -> None:
                texts, _ = texts_to_embed(chunk, mode, budget, batch_values)
                embedded = await self.clients.embedding.embed(texts, budget.tokens)
                if embedded.vectors.count != len(chunk):
                    raise DownstreamError(
                        "embedding", "INTERNAL", f"{embedded.vectors.count} vectors for {len(chunk)} texts"
                    )
                parts[batch] = embedded.vectors
                models.append(embedded.model)

            await facets_and_embedding(mode, facets, embed)

        batches = range(math.ceil(len(conversations) / size))
        await bounded(batches, self.settings.max_inflight_batches, one)
        dim = parts[0].dim if parts else 0
        data = b"".join(parts[b].data for b in batches)
        vectors = PackedBatch(data=data, dim=dim, count=len(conversations))
        return _Enriched(values, vectors, models[0] if models else "")

    # -- centroids ---------------------------------------------------------------------------------

    def _entry(self, analysis_id: str) -> _Cached:
        entry = self._cache.get(analysis_id)
        if entry is None:
            entry = self._cache[analysis_id] = _Cached()
            while len(self._cache) > CACHED_ANALYSES:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(analysis_id)
        return entry

    async def _centroids(self, analysis: Analysis) -> Centroids:
        """The base clusters' centroids: cached, else stored, else computed now (once) and stored."""
        entry = self._entry(analysis.id)
        if entry.centroids is not None:
            return entry.centroids
        centroids = await in_thread(self.store.load_centroids, analysis.id)
        if centroids is None:
            began = time.perf_counter()
            centroids = await in_thread(self._compute_centroids, analysis)
            await in_thread(self.store.save_centroids, analysis.id, centroids)
            seconds = time.perf_counter() - began
            metrics.observe_stage(CENTROIDS_STAGE, seconds)
            log.info(
                "centroids_computed",
                analysis_id=analysis.id,
                clusters=len(centroids.cluster_ids),
                members=centroids.members,
                seconds=round(seconds, 3),
            )
        entry.centroids = centroids
        return centroids

    def _compute_centroids(self, analysis: Analysis) -> Centroids:
        """Blocking: two passes over the analysis's own vectors, chunk by chunk."""
        base = [c.cluster.id for c in self.store.load_clusters(analysis.id) if c.cluster.level == 0]
        if not base:
            raise FailedPrecondition(
                f"analysis {analysis.id!r} reports no base cluster (the privacy threshold withheld every "
                "conversation): there is nothing to assign to"
            )
        index = {cluster_id: row for row, cluster_id in enumerate(base)}
        builder = CentroidBuilder(base)
        count = analysis.conversation_count
        ranges = [(start, min(count, start + CENTROID_CHUNK)) for start in range(0, count, CENTROID_CHUNK)]
        labels = [
            [index.get(cluster_id, -1) for cluster_id in self.store.member_clusters(analysis.id, start, end)]
            for start, end in ranges
        ]
        for add in (builder.add, builder.add_distances):
            for (start, end), chunk_labels in zip(ranges, labels, strict=True):
                add(chunk_labels, self.store.load_vector_range(analysis.id, start, end))
        return builder.build(self.store.embedding_model(analysis.id))

    def max_distance(self, centroids: Centroids) -> float:
        if self.settings.assign_max_distance is not None:
            return self.settings.assign_max_distance
        return centroids.max_distance(self.settings.assign_distance_percentile)

    # -- the assignment and store step --------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _serialized(self, analysis_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(analysis_id, (asyncio.Lock(), 0))
        self._locks[analysis_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[analysis_id]
            if users > 1:
                self._locks[analysis_id] = (lock, users - 1)
            else:
                del self._locks[analysis_id]

    def _assign_and_store(
        self,
        analysis: Analysis,
        conversations: Sequence[Conversation],
        enriched: _Enriched,
        centroids: Centroids,
        state: RevisionState | None,
        request_id: str,
    ) -> tuple[AssignOutcome, RevisionState | None]:
        """Blocking: the nearest base clusters, the next revision, written. ``state``: the newest
        revision as cached (None: read it). Returns the answer and the new revision's state (None when
        another call with the same request id had written its own)."""
        rows, distances = centroids.nearest(enriched.vectors)
        threshold = self.max_distance(centroids)
        nearest = [
            centroids.cluster_ids[row] if distance <= threshold else ""
            for row, distance in zip(rows.tolist(), distances.tolist(), strict=True)
        ]
        definitions = {d.name: d for d in self._definitions(analysis)}
        rule = privacy_rule(analysis)
        for _ in range(MAX_CONFLICTS):
            latest = self.store.latest_revision(analysis.id)
            if latest is None:
                raise NotFound(f"analysis {analysis.id!r} not found")
            if state is None or state.revision != latest:
                state = self.store.load_revision_state(analysis.id, latest)
                if state is None:
                    raise NotFound(f"analysis {analysis.id!r} not found")
            start = state.summary.total
            members = [
                Member(
                    ordinal=start + offset,
                    conversation_id=conversation.id,
                    user=user_key(conversation.user_id, start + offset),
                    cluster_id=nearest[offset],
                    distance=float(distances[offset]),
                    values=list(enriched.values[offset]),
                    revision=state.revision + 1,
                )
                for offset, conversation in enumerate(conversations)
            ]
            new = next_revision(
                state, members, rule, definitions, max_distance=threshold, request_id=request_id
            )
            try:
                self.store.save_revision(analysis.id, state.revision, new, conversations)
            except RevisionConflict:
                state = None
                self._refuse_taken_ids(analysis.id, conversations)
                continue
            except DuplicateRequestId:
                revision = self.store.find_revision(analysis.id, request_id)
                if revision is None:
                    raise
                return self.store.assign_outcome(analysis.id, revision), None
            return new.outcome(), new.state
        raise Unavailable(
            f"analysis {analysis.id!r} got {MAX_CONFLICTS} other revisions while this one was written",
            reason="CONCURRENT_REVISIONS",
        )

    def _definitions(self, analysis: Analysis) -> list[FacetDefinition]:
        return self.store.facet_definitions(analysis.id) or []

    def _refuse_taken_ids(self, analysis_id: str, conversations: Sequence[Conversation]) -> None:
        """After another revision was written: refuses ids it has added meanwhile."""
        known = self.store.conversation_ids(analysis_id)
        taken = [
            (f"conversations[{i}].id", f"conversation id {c.id[:64]!r} is already in the analysis")
            for i, c in enumerate(conversations)
            if c.id in known
        ]
        if taken:
            raise InvalidArgument.many(taken)
