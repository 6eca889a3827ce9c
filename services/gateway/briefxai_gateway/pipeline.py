"""Runs one analysis: facets -> embed (per batch, batches overlapping) -> cluster -> store.

Conversations are read back from the store one batch at a time (``batch_size``, fixed per analysis
at creation), so memory holds at most ``max_inflight_batches`` batches of raw text. For each batch:

- facets: ``ExtractFacets``; values and the (facets, batch) checkpoint are written in one transaction;
- embed: the text chosen by ``options.embed_text`` (``embed_text.py``) goes to ``EmbedTexts``; the
  packed vectors and the (embed, batch) checkpoint are written in one transaction.

Facets and embedding of one batch run side by side, except with ``REQUEST_SUMMARY`` where the
embedded text is the ``request`` facet (``batching.py``, shared with AssignConversations). A resumed
run skips every (stage, batch) that has a checkpoint. Then one ``StreamClusterEmbeddings`` call sends
every vector, ``CLUSTER_CHUNK_VECTORS`` at a time, each chunk read back from the store (vectors, ids,
user ids, naming texts) only when the call is ready to send it, so the gateway never holds every vector
or string at once. Then clusters (with facet distributions), assignments, map points, the last
checkpoints and SUCCEEDED are written in one transaction, the assignment rows made as they are written.

An analysis larger than the clustering service takes in one job (its ``max_vectors``, from GetLimits)
is fitted on a sample: the call sends a seeded simple random sample of ``max_vectors`` conversations
(``fit_sample``; the same seed draws the same sample), and the service fits the base clusters, the
hierarchy, the names and the map on it. Every other conversation then goes to the base cluster of the
nearest centroid, the normalised mean of the cluster's sampled members (``centroids.py``, the rule
AssignConversations applies): one pass over the stored vectors sums the sample's centroids, a second
assigns the rest chunk by chunk. The nearest centroid is found here, not by clustering replicas: at
k = 200 it costs a few microseconds per vector (``benchmarks/million.py``), a small part of the
gateway's own work per conversation, and the store read that feeds it is the gateway's anyway. The tree's
sizes and distinct users are then counted over every conversation; the privacy thresholds held on the
sample, and full counts only add to them (``check_grown``). The map holds the sample's points only.
What the gateway holds meanwhile is a few arrays of one number per conversation (13 bytes each), the
sample's clustering answer and one chunk of vectors.

A downstream service that is unavailable is waited out (``outages.py`` wraps the clients); a failure
that reaches the pipeline (another status, or an outage past ``outage_budget_seconds``) ends the
analysis FAILED with a message naming the service; cancellation (user cancel or shutdown) propagates
as CancelledError.

Each run is one trace: an ``analysis`` root span (a new trace, linked to the span of the call that
created the analysis) with a span per stage (``validate``; ``facets`` and ``embed`` per batch;
``cluster``; ``store``) and a ``store.<operation>`` span per store call. The downstream calls made in
a stage are its children, and carry ``x-request-id`` (the analysis id) and ``x-analysis-id``.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import structlog
from opentelemetry import trace
from opentelemetry.trace import Span, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from briefxai_common import tracing
from briefxai_common.logging import get_logger
from briefxai_common.memory import release_free_memory

from . import metrics
from .batching import FacetValues, bounded, facets_and_embedding, text_budget, texts_to_embed
from .centroids import CentroidBuilder, FloatArray, IntArray, nearest
from .concurrency import in_thread
from .distributions import DistributionBuilder
from .downstream import DownstreamError, Downstreams
from .embed_text import TextBudget, naming_text
from .languages import flag_languages
from .models import (
    Analysis,
    AnalysisFailure,
    AnalysisState,
    AssignmentRow,
    ClusteringChunk,
    ClusteringInput,
    ClusteringOutput,
    ClusterNode,
    Conversation,
    FacetDefinition,
    FacetValue,
    PackedBatch,
    Stage,
)
from .progress import LiveProgress, ProgressHub
from .revisions import user_key
from .security.principal import bind_tenant
from .settings import GatewaySettings
from .store import Store, decode_messages
from .validation import facets_to_extract

log = get_logger(__name__)
tracer = trace.get_tracer(__name__)
T = TypeVar("T")

# Vectors per StreamClusterEmbeddings chunk: 8192 x 384 float32 is 12.6 MB per message. Also the
# ordinals per step of the passes over a sampled analysis's stored vectors.
CLUSTER_CHUNK_VECTORS = 8192
# Mixed into the analysis seed for the fit sample, so that it is a random stream of its own.
SAMPLE_STREAM = 0x53414D50


def fit_sample(count: int, size: int, seed: int) -> IntArray:
    """The ordinals (ascending) of a seeded simple random sample of ``size`` of ``count`` conversations."""
    rng = np.random.default_rng([seed, SAMPLE_STREAM])
    return np.sort(rng.choice(count, size=size, replace=False)).astype(np.int64)


def within(ordinals: IntArray, start: int, end: int) -> IntArray:
    """The sorted ``ordinals`` in [start, end)."""
    lo, hi = np.searchsorted(ordinals, [start, end])
    return ordinals[lo:hi]


def take_rows(vectors: PackedBatch, rows: IntArray) -> PackedBatch:
    """The packed vectors at ``rows`` (offsets into ``vectors``), in that order."""
    matrix = np.frombuffer(vectors.data, dtype="<f4", count=vectors.count * vectors.dim)
    picked = matrix.reshape(vectors.count, vectors.dim)[rows]
    return PackedBatch(data=picked.tobytes(), dim=vectors.dim, count=len(rows))


def user_hash(user: str) -> int:
    """A stable 64-bit key of a ``user_key`` (distinct users are counted on these)."""
    return int.from_bytes(hashlib.blake2b(user.encode(), digest_size=8).digest(), "little")


def distinct_pairs(groups: IntArray, users: npt.NDArray[np.uint64], count: int) -> IntArray:
    """Distinct users per group 0..count-1 (``groups`` and ``users`` side by side)."""
    if not len(groups):
        return np.zeros(count, dtype=np.int64)
    order = np.lexsort((users, groups))
    g, u = groups[order], users[order]
    first = np.ones(len(g), dtype=bool)
    first[1:] = (g[1:] != g[:-1]) | (u[1:] != u[:-1])
    return np.bincount(g[first], minlength=count).astype(np.int64)


@dataclass(slots=True)
class Membership:
    """Where each of an analysis's conversations landed, by ordinal: the row of its reported base cluster
    in ``base_ids`` (-1: withheld). A sampled analysis also keeps each conversation's ``user_hash``, to
    count the tree over every conversation."""

    base_ids: list[str]
    labels: npt.NDArray[np.int32]
    users: npt.NDArray[np.uint64] | None = None

    @property
    def withheld(self) -> int:
        return int(np.count_nonzero(self.labels < 0))

    def cluster_ids(self, start: int, end: int) -> list[str]:
        """The base cluster id of each ordinal in [start, end); "" when withheld."""
        return [self.base_ids[label] if label >= 0 else "" for label in self.labels[start:end].tolist()]


def full_counts(clusters: Sequence[ClusterNode], membership: Membership) -> list[ClusterNode]:
    """The tree with each node's size and distinct users counted over every conversation of
    ``membership`` (a node's members: the conversations of the base clusters under it)."""
    assert membership.users is not None  # noqa: S101  invariant for mypy, not a check on input
    levels: dict[int, list[ClusterNode]] = {}
    for node in clusters:
        levels.setdefault(node.level, []).append(node)
    index = {node.id: i for nodes in levels.values() for i, node in enumerate(nodes)}
    member = membership.labels >= 0
    labels = membership.labels[member].astype(np.int64)
    users = membership.users[member]
    # ancestor[b]: the index of base cluster b's ancestor at the current level (-1: none).
    ancestor = np.arange(len(membership.base_ids), dtype=np.int64)
    counted: dict[str, tuple[int, int]] = {}
    for level in sorted(levels):
        nodes = levels[level]
        if level > 0:
            below = levels.get(level - 1, [])
            parent = np.array([index.get(n.parent_id, -1) if n.parent_id else -1 for n in below], np.int64)
            ancestor = (
                np.where(ancestor >= 0, parent[np.maximum(ancestor, 0)], -1) if len(parent) else ancestor
            )
        groups = ancestor[labels] if len(labels) else labels
        keep = groups >= 0
        sizes = np.bincount(groups[keep], minlength=len(nodes))
        distinct = distinct_pairs(groups[keep], users[keep], len(nodes))
        for i, node in enumerate(nodes):
            counted[node.id] = (int(sizes[i]), int(distinct[i]))
    return [replace(node, size=counted[node.id][0], distinct_users=counted[node.id][1]) for node in clusters]


def check_grown(fitted: Sequence[ClusterNode], counted: Sequence[ClusterNode]) -> None:
    """Every node counted over all conversations has at least the size and distinct users it had in the
    sample, where the clustering service's privacy thresholds held: so they hold over the full counts."""
    for before, after in zip(fitted, counted, strict=True):
        if after.size < before.size or after.distinct_users < before.distinct_users:
            raise PipelineError(
                f"cluster {after.id} counts {after.size} conversations of {after.distinct_users} users over "
                f"the analysis, fewer than the {before.size} of {before.distinct_users} of its sample"
            )


class PipelineError(Exception):
    """A problem that fails the analysis with this message; ``code`` is its status code name."""

    def __init__(self, message: str, code: str = "INTERNAL") -> None:
        super().__init__(message)
        self.code = code


class Pipeline:
    def __init__(
        self, settings: GatewaySettings, store: Store, clients: Downstreams, hub: ProgressHub
    ) -> None:
        self.settings = settings
        self.store = store
        self.clients = clients
        self.hub = hub
        # Per running analysis: the embedding model it is pinned to (the one its stored vectors came
        # from; else the service's model when it started), so that a failover to another embedding
        # model is refused rather than mixed into its clusters; and the facets chain's first provider.
        self._embedding_pins: dict[str, str] = {}
        self._primary_providers: dict[str, str] = {}

    # -- entry point -----------------------------------------------------------------------------

    async def run(self, analysis_id: str, origin: SpanContext | None = None) -> None:
        """Runs or resumes ``analysis_id`` until it is terminal. CancelledError propagates and leaves
        the analysis as it is (a user cancel has already marked it CANCELLED).

        The run is traced under a root span of its own, linked to ``origin``: the span of the call that
        created the analysis (None when it is resumed after a restart). Its downstream calls send the
        analysis id as both request id and analysis id."""
        attributes: dict[str, AttributeValue] = {
            tracing.ANALYSIS_ID: analysis_id,
            "briefxai.analysis.resumed": origin is None,
        }
        with (
            structlog.contextvars.bound_contextvars(analysis_id=analysis_id, request_id=analysis_id),
            tracing.job_span(tracer, "analysis", link_to=origin, attributes=attributes) as span,
        ):
            # The run is the analysis's tenant's, whichever call or heartbeat started it.
            tenant = await self._db(self.store.tenant_of, analysis_id)
            if tenant is not None:
                bind_tenant(tenant)
            analysis = await self._db(self.store.get_analysis, analysis_id)
            if analysis is None or analysis.state.terminal:
                span.set_attribute("briefxai.analysis.state", analysis.state.value if analysis else "deleted")
                return
            if not await self._db(self.store.set_running, analysis_id):
                return
            span.set_attributes(
                {
                    "briefxai.analysis.conversations": analysis.conversation_count,
                    tracing.BATCH_SIZE: analysis.batch_size,
                    "briefxai.analysis.embed_text": analysis.options.embed_text.value,
                }
            )
            live = self.hub.start(analysis_id, analysis.conversation_count)
            log.info("analysis_running", analysis_id=analysis_id, conversations=analysis.conversation_count)
            try:
                await self._run(analysis, live)
            except DownstreamError as exc:
                await self._fail(analysis_id, AnalysisFailure(exc.status_code, exc.describe()))
            except PipelineError as exc:
                await self._fail(analysis_id, AnalysisFailure(exc.code, str(exc)))
            except Exception as exc:
                log.exception("analysis_crashed", analysis_id=analysis_id)
                span.record_exception(exc)
                await self._fail(
                    analysis_id, AnalysisFailure("INTERNAL", f"internal error: {type(exc).__name__}: {exc}")
                )
            finally:
                self.hub.finish(analysis_id)
                self._embedding_pins.pop(analysis_id, None)
                self._primary_providers.pop(analysis_id, None)

    async def _fail(self, analysis_id: str, failure: AnalysisFailure) -> None:
        span = trace.get_current_span()
        span.set_status(Status(StatusCode.ERROR, failure.message))
        span.set_attributes({"briefxai.analysis.state": "failed", "error.type": failure.code})
        if await self._db(
            self.store.finish, analysis_id, AnalysisState.FAILED, failure.message, failure.code
        ):
            metrics.ANALYSES_TOTAL.labels(state=AnalysisState.FAILED.value).inc()
            log.warning("analysis_failed", analysis_id=analysis_id, code=failure.code, error=failure.message)

    # -- tracing ---------------------------------------------------------------------------------

    @contextmanager
    def _stage(
        self, stage: Stage, analysis: Analysis, batch: int | None = None, size: int | None = None
    ) -> Iterator[Span]:
        """The span of one stage (of one batch), current while the block runs."""
        attributes: dict[str, AttributeValue] = {tracing.ANALYSIS_ID: analysis.id, tracing.STAGE: stage.value}
        if batch is not None:
            attributes[tracing.BATCH_INDEX] = batch
        if size is not None:
            attributes[tracing.BATCH_SIZE] = size
        with tracer.start_as_current_span(stage.value, attributes=attributes) as span:
            yield span

    async def _db(self, fn: Callable[..., T], *args: Any, operation: str = "") -> T:
        """``in_thread(fn, *args)``, a store call, traced as a ``store.<operation>`` span."""
        operation = operation or getattr(fn, "__name__", "call")
        with tracer.start_as_current_span(
            f"store.{operation}",
            kind=SpanKind.CLIENT,
            attributes={"db.system.name": self.store.dialect, "db.operation.name": operation},
        ):
            return await in_thread(fn, *args)

    # -- the stages ------------------------------------------------------------------------------

    async def _run(self, analysis: Analysis, live: LiveProgress) -> None:
        with self._stage(Stage.VALIDATE, analysis) as span:
            definitions = await self._definitions(analysis)
            info = await self.clients.embedding.model_info()
            budget = text_budget(analysis.options, self.settings.defaults.embed_token_budget, info)
            pinned = await self._db(self.store.embedding_model, analysis.id) or info.model
            self._embedding_pins[analysis.id] = pinned
            self._primary_providers[analysis.id] = next(iter(await self.clients.facets.providers()), "")
            span.set_attributes(
                {"briefxai.facets": [d.name for d in definitions], "briefxai.embedding.model": pinned}
            )
        await self._batches(analysis, live, budget)
        release_free_memory()  # the batches' buffers, before the clustering input is read
        sample = await self._fit_sample(analysis)
        output, membership = await self._cluster(analysis, live, sample)
        await self._store(analysis, live, output, membership, definitions, sample)
        del output, membership
        release_free_memory()

    async def _definitions(self, analysis: Analysis) -> list[FacetDefinition]:
        """Facet definitions, asked of the facets service on the first run and kept with the analysis."""
        stored = await self._db(self.store.facet_definitions, analysis.id)
        if stored is not None:
            return stored
        definitions = await self.clients.facets.list_facets()
        offered = {d.name for d in definitions}
        unknown = [name for name in facets_to_extract(analysis.options) if name not in offered]
        if unknown:
            raise PipelineError(
                f"unknown facet(s) {', '.join(unknown)}; the facets service offers: {', '.join(sorted(offered))}",
                code="FAILED_PRECONDITION",
            )
        await self._db(self.store.set_facet_definitions, analysis.id, definitions)
        return definitions

    # -- facets and embedding, per batch ----------------------------------------------------------

    def _bounds(self, analysis: Analysis, batch: int) -> tuple[int, int]:
        start = batch * analysis.batch_size
        return start, min(analysis.conversation_count, start + analysis.batch_size)

    def _update_stage(self, analysis: Analysis, live: LiveProgress) -> None:
        total = analysis.conversation_count
        if live.done.get(Stage.FACETS, 0) < total:
            live.stage = Stage.FACETS
        elif live.done.get(Stage.EMBED, 0) < total:
            live.stage = Stage.EMBED
        else:
            live.stage = Stage.CLUSTER
        self.hub.notify(analysis.id)

    async def _batches(self, analysis: Analysis, live: LiveProgress, budget: TextBudget) -> None:
        done = await self._db(self.store.done_batches, analysis.id)
        batches = math.ceil(analysis.conversation_count / analysis.batch_size)

        def finished(stage: Stage) -> int:
            return sum(
                min(analysis.batch_size, analysis.conversation_count - b * analysis.batch_size)
                for b in done[stage]
                if b < batches
            )

        live.begin(Stage.FACETS, finished(Stage.FACETS))
        live.begin(Stage.EMBED, finished(Stage.EMBED))
        self._update_stage(analysis, live)
        todo = [b for b in range(batches) if b not in done[Stage.FACETS] or b not in done[Stage.EMBED]]
        if len(todo) < batches:
            log.info(
                "analysis_resumed", analysis_id=analysis.id, batches_done=batches - len(todo), batches=batches
            )
        facet_names = facets_to_extract(analysis.options)

        async def one(batch: int) -> None:
            await self._batch(
                analysis,
                live,
                batch,
                need_facets=batch not in done[Stage.FACETS],
                need_embed=batch not in done[Stage.EMBED],
                facet_names=facet_names,
                budget=budget,
            )

        await bounded(todo, self.settings.max_inflight_batches, one)

    async def _batch(
        self,
        analysis: Analysis,
        live: LiveProgress,
        batch: int,
        *,
        need_facets: bool,
        need_embed: bool,
        facet_names: Sequence[str],
        budget: TextBudget,
    ) -> None:
        start, end = self._bounds(analysis, batch)
        conversations = await self._db(self.store.load_conversations, analysis.id, start, end)
        if len(conversations) != end - start:
            raise PipelineError(
                f"stored conversations {start}..{end} are incomplete ({len(conversations)} found)"
            )

        async def facets() -> FacetValues:
            return await self._facets(analysis, live, batch, start, conversations, facet_names)

        async def embed(values: FacetValues | None) -> None:
            await self._embed(analysis, live, batch, start, conversations, values, budget)

        async def stored_values() -> FacetValues:
            stored = await self._db(self.store.load_facets, analysis.id, start, end)
            return [stored.get(start + i, []) for i in range(end - start)]

        await facets_and_embedding(
            analysis.options.embed_text,
            facets if need_facets else None,
            embed if need_embed else None,
            stored_values,
        )

    async def _facets(
        self,
        analysis: Analysis,
        live: LiveProgress,
        batch: int,
        start: int,
        conversations: Sequence[Conversation],
        facet_names: Sequence[str],
    ) -> list[list[FacetValue]]:
        began = time.perf_counter()
        with self._stage(Stage.FACETS, analysis, batch, len(conversations)) as span:
            span.set_attribute("briefxai.facets", list(facet_names))
            values = await self.clients.facets.extract(conversations, facet_names)
            warnings: Counter[str] = Counter()
            primary = self._primary_providers.get(analysis.id, "")
            for per_conversation in values:
                for value in per_conversation:
                    if value.failed:
                        warnings[f"facet_failed:{value.facet}"] += 1
                    elif primary and value.provider and value.provider != primary:
                        warnings[f"facets_served_by:{value.provider}"] += 1
            span.set_attribute("briefxai.facets.failed_values", sum(warnings.values()))
            await self._db(self.store.save_facets_batch, analysis.id, batch, start, values, dict(warnings))
        metrics.observe_stage(Stage.FACETS.value, time.perf_counter() - began)
        metrics.CONVERSATIONS_PROCESSED.labels(stage=Stage.FACETS.value).inc(len(conversations))
        live.advance(Stage.FACETS, len(conversations))
        self._update_stage(analysis, live)
        return values

    async def _embed(
        self,
        analysis: Analysis,
        live: LiveProgress,
        batch: int,
        start: int,
        conversations: Sequence[Conversation],
        values: Sequence[Sequence[FacetValue]] | None,
        budget: TextBudget,
    ) -> None:
        began = time.perf_counter()
        with self._stage(Stage.EMBED, analysis, batch, len(conversations)) as span:
            texts, fallbacks = texts_to_embed(conversations, analysis.options.embed_text, budget, values)
            span.set_attribute("briefxai.embed.max_tokens", budget.tokens)
            embedded = await self.clients.embedding.embed(
                texts, budget.tokens, self._embedding_pins.get(analysis.id, "")
            )
            span.set_attributes(
                {"briefxai.embedding.model": embedded.model, "briefxai.embed.truncated": embedded.truncated}
            )
            if embedded.vectors.count != len(conversations):
                raise PipelineError(
                    f"embedding returned {embedded.vectors.count} vectors for {len(conversations)} texts"
                )
            warnings = {"request_summary_fallback": fallbacks} if fallbacks else {}
            await self._db(
                self.store.save_embeddings_batch,
                analysis.id,
                batch,
                start,
                embedded.vectors,
                embedded.model,
                warnings,
            )
        metrics.observe_stage(Stage.EMBED.value, time.perf_counter() - began)
        metrics.CONVERSATIONS_PROCESSED.labels(stage=Stage.EMBED.value).inc(len(conversations))
        live.advance(Stage.EMBED, len(conversations))
        self._update_stage(analysis, live)

    # -- clustering and the results --------------------------------------------------------------

    async def _fit_sample(self, analysis: Analysis) -> IntArray | None:
        """The ordinals the clustering service fits on when the analysis has more conversations than it
        takes in one job (its ``max_vectors``); None: every conversation."""
        count = analysis.conversation_count
        limit = (await self.clients.clustering.limits()).max_vectors
        if count <= limit:
            return None
        return await in_thread(fit_sample, count, limit, analysis.options.seed)

    def _clustering_input(self, analysis: Analysis, sample: IntArray | None) -> ClusteringInput:
        """Every vector (or every one of ``sample``) with its id, user id and naming text, in order, read
        lazily chunk by chunk."""
        count = analysis.conversation_count

        async def chunks() -> AsyncIterator[ClusteringChunk]:
            for start in range(0, count, CLUSTER_CHUNK_VECTORS):
                end = min(count, start + CLUSTER_CHUNK_VECTORS)
                keep = None if sample is None else within(sample, start, end)
                if keep is not None and not len(keep):
                    continue
                yield await self._db(
                    self._clustering_chunk, analysis.id, start, end, keep, operation="load_clustering_chunk"
                )

        options = analysis.options
        return ClusteringInput(
            count=count if sample is None else len(sample),
            chunks=chunks,
            k=options.k,
            hierarchy_depth=options.hierarchy_depth,
            min_cluster_size=options.min_cluster_size,
            min_distinct_users=options.min_distinct_users,
            seed=options.seed,
        )

    def _clustering_chunk(
        self, analysis_id: str, start: int, end: int, keep: IntArray | None = None
    ) -> ClusteringChunk:
        """Blocking: the vectors of ordinals [start, end) (only those in ``keep`` when given), their ids,
        user ids and naming texts."""
        vectors = self.store.load_vector_range(analysis_id, start, end)
        budget = self.settings.naming_text_chars
        requests = self.store.request_texts_by_index(analysis_id, start, end)
        wanted = None if keep is None else set(keep.tolist())
        with_messages = any(o not in requests for o in (range(start, end) if wanted is None else wanted))
        ids: list[str] = []
        user_ids: list[str] = []
        texts: list[str] = []
        for ordinal, conversation_id, user_id, messages in self.store.iter_conversation_rows(
            analysis_id, with_messages=with_messages, start=start, end=end
        ):
            if wanted is not None and ordinal not in wanted:
                continue
            ids.append(conversation_id)
            user_ids.append(user_id)
            summary = requests.get(ordinal, "")
            decoded = decode_messages(messages) if messages is not None and not summary else []
            texts.append(naming_text(summary, decoded, budget))
        if keep is not None:
            vectors = take_rows(vectors, keep - start)
        if len(ids) != vectors.count:
            raise PipelineError(
                f"{len(ids)} conversations stored but {vectors.count} vectors at ordinals [{start}, {end})"
            )
        return ClusteringChunk(vectors=vectors, ids=ids, user_ids=user_ids, texts=texts)

    async def _cluster(
        self, analysis: Analysis, live: LiveProgress, sample: IntArray | None
    ) -> tuple[ClusteringOutput, Membership]:
        """The clustering service's tree of every conversation, or of ``sample`` with every other
        conversation then assigned to its nearest base centroid (``_assign_rest``)."""
        live.stage = Stage.CLUSTER
        live.begin(Stage.CLUSTER)
        self.hub.notify(analysis.id)
        began = time.perf_counter()
        count = analysis.conversation_count
        fitted = count if sample is None else len(sample)
        with self._stage(Stage.CLUSTER, analysis, size=count) as span:
            output = await self.clients.clustering.cluster(self._clustering_input(analysis, sample))
            live.advance(Stage.CLUSTER, fitted)
            self.hub.notify(analysis.id)
            membership = await in_thread(self._fitted_membership, output, count, sample)
            if sample is not None:
                await self._assign_rest(analysis, live, sample, membership)
            span.set_attributes(
                {
                    "briefxai.cluster.k": output.k,
                    "briefxai.cluster.clusters": len(output.clusters),
                    "briefxai.cluster.fitted": fitted,
                    "briefxai.cluster.withheld": membership.withheld,
                }
            )
        metrics.observe_stage(Stage.CLUSTER.value, time.perf_counter() - began)
        metrics.CONVERSATIONS_PROCESSED.labels(stage=Stage.CLUSTER.value).inc(count)
        return output, membership

    @staticmethod
    def _fitted_membership(output: ClusteringOutput, count: int, sample: IntArray | None) -> Membership:
        """The base clusters of the conversations the clustering service saw (the others withheld, until
        ``_assign_rest``)."""
        base_ids = [c.id for c in output.clusters if c.level == 0]
        row_of = {cluster_id: row for row, cluster_id in enumerate(base_ids)}
        labels = np.full(count, -1, dtype=np.int32)
        fitted = np.full(len(output.assignments), -1, dtype=np.int32)
        for i, (conversation_id, cluster_id, withheld) in enumerate(output.assignments):
            if withheld:
                continue
            row = row_of.get(cluster_id)
            if row is None:
                raise PipelineError(
                    f"the clustering service put conversation {conversation_id!r} in cluster {cluster_id!r}, "
                    "which is not one of its base clusters"
                )
            fitted[i] = row
        labels[slice(None) if sample is None else sample] = fitted
        users = None if sample is None else np.zeros(count, dtype=np.uint64)
        return Membership(base_ids, labels, users)

    async def _assign_rest(
        self, analysis: Analysis, live: LiveProgress, sample: IntArray, membership: Membership
    ) -> None:
        """Every conversation outside ``sample`` into the base cluster of the nearest centroid (the
        sample's members' normalised mean, ``centroids.py``, as AssignConversations uses), and every
        conversation's user key, in two passes over the stored vectors chunk by chunk."""
        count = analysis.conversation_count
        ranges = [(s, min(count, s + CLUSTER_CHUNK_VECTORS)) for s in range(0, count, CLUSTER_CHUNK_VECTORS)]
        centroids: tuple[IntArray, FloatArray] | None = None
        if membership.base_ids:
            builder = CentroidBuilder(membership.base_ids)
            for start, end in ranges:
                await self._db(
                    self._add_sample_chunk, builder, analysis.id, start, end, sample, membership,
                    operation="load_sample_vectors",
                )  # fmt: skip
            ids, matrix = await in_thread(builder.unit_centroids)
            row_of = {cluster_id: row for row, cluster_id in enumerate(membership.base_ids)}
            centroids = np.array([row_of[cluster_id] for cluster_id in ids], dtype=np.int64), matrix
        for start, end in ranges:
            assigned = await self._db(
                self._assign_chunk, analysis.id, start, end, sample, centroids, membership,
                operation="assign_chunk",
            )  # fmt: skip
            live.advance(Stage.CLUSTER, assigned)
            self.hub.notify(analysis.id)

    def _add_sample_chunk(
        self,
        builder: CentroidBuilder,
        analysis_id: str,
        start: int,
        end: int,
        sample: IntArray,
        membership: Membership,
    ) -> None:
        """Blocking: the sampled vectors of ordinals [start, end) added to the centroid sums."""
        keep = within(sample, start, end)
        if not len(keep):
            return
        vectors = take_rows(self.store.load_vector_range(analysis_id, start, end), keep - start)
        builder.add(membership.labels[keep].tolist(), vectors)

    def _assign_chunk(
        self,
        analysis_id: str,
        start: int,
        end: int,
        sample: IntArray,
        centroids: tuple[IntArray, FloatArray] | None,
        membership: Membership,
    ) -> int:
        """Blocking: the users of ordinals [start, end), and the nearest base cluster of those outside
        ``sample`` (withheld when the sample reported none); returns how many were assigned."""
        assert membership.users is not None  # noqa: S101  invariant for mypy, not a check on input
        users = membership.users
        seen = 0
        for ordinal, _, user_id, _ in self.store.iter_conversation_rows(
            analysis_id, with_messages=False, start=start, end=end
        ):
            users[ordinal] = user_hash(user_key(user_id, ordinal))
            seen += 1
        if seen != end - start:
            raise PipelineError(f"stored conversations {start}..{end} are incomplete ({seen} found)")
        rest = np.setdiff1d(np.arange(start, end), within(sample, start, end), assume_unique=True)
        if centroids is not None and len(rest):
            rows, matrix = centroids
            vectors = take_rows(self.store.load_vector_range(analysis_id, start, end), rest - start)
            nearest_rows, _ = nearest(matrix, vectors)
            membership.labels[rest] = rows[nearest_rows]
        return len(rest)

    def _assignment_rows(
        self, output: ClusteringOutput, membership: Membership, sample: IntArray | None
    ) -> Iterator[AssignmentRow]:
        """Every conversation's row, made as the store writes them; the map points are the fitted
        conversations' (the clustering service places only those)."""
        count = len(membership.labels)
        fitted = iter(output.assignments)
        next_fitted = iter(range(count) if sample is None else sample.tolist())
        upcoming = next(next_fitted, -1)
        for start in range(0, count, CLUSTER_CHUNK_VECTORS):
            end = min(count, start + CLUSTER_CHUNK_VECTORS)
            for ordinal, cluster_id in enumerate(membership.cluster_ids(start, end), start=start):
                conversation_id, point = "", None
                if ordinal == upcoming:
                    conversation_id = next(fitted)[0]
                    point = output.points.get(conversation_id) if cluster_id else None
                    upcoming = next(next_fitted, -1)
                yield AssignmentRow(
                    ordinal=ordinal,
                    conversation_id=conversation_id,
                    cluster_id=cluster_id,
                    withheld=not cluster_id,
                    x=point[0] if point else None,
                    y=point[1] if point else None,
                )

    def _save(
        self,
        analysis: Analysis,
        output: ClusteringOutput,
        membership: Membership,
        definitions: Sequence[FacetDefinition],
        sample: IntArray | None,
        waited: Mapping[str, int],
    ) -> bool:
        """Blocking: facet distributions per cluster, then everything in one transaction. A sampled
        analysis's tree is counted again over every conversation. ``waited``: seconds the run waited for
        each downstream that was down, kept as warnings (it ran degraded)."""
        clusters = output.clusters
        k_rule = output.k_rule
        if sample is not None:
            clusters = full_counts(output.clusters, membership)
            check_grown(output.clusters, clusters)
            count = analysis.conversation_count
            k_rule += (
                f"; fitted on a seeded sample of {len(sample):,} of {count:,} conversations (the clustering "
                f"service's max_vectors), the other {count - len(sample):,} assigned to the nearest base "
                "centroid"
            )
        builder = DistributionBuilder({d.name: d for d in definitions})
        cluster_of = membership.cluster_ids(0, len(membership.labels))
        for ordinal, facet, text, number in self.store.iter_facet_rows(analysis.id):
            if ordinal < len(cluster_of):
                builder.add(cluster_of[ordinal], facet, text, number)
        del cluster_of
        distributions = builder.build(clusters)
        flag_languages(clusters, distributions)
        withheld_count = membership.withheld
        meta = {
            "k": output.k,
            "k_rule": k_rule,
            "base_algorithm": output.base_algorithm,
            "map_algorithm": output.map_algorithm,
            "withheld_count": withheld_count,
        }
        warnings = {"withheld": withheld_count} if withheld_count else {}
        warnings.update({f"waited_for:{service}": seconds for service, seconds in waited.items()})
        rows = self._assignment_rows(output, membership, sample)
        return self.store.save_results(analysis.id, clusters, distributions, rows, meta, warnings)

    async def _store(
        self,
        analysis: Analysis,
        live: LiveProgress,
        output: ClusteringOutput,
        membership: Membership,
        definitions: Sequence[FacetDefinition],
        sample: IntArray | None,
    ) -> None:
        live.stage = Stage.STORE
        live.begin(Stage.STORE)
        self.hub.notify(analysis.id)
        began = time.perf_counter()
        with self._stage(Stage.STORE, analysis, size=analysis.conversation_count):
            saved = await self._db(
                self._save,
                analysis,
                output,
                membership,
                definitions,
                sample,
                {service: max(1, round(s)) for service, s in self.hub.waited_seconds(analysis.id).items()},
                operation="save_results",
            )
        if not saved:
            trace.get_current_span().set_attribute("briefxai.analysis.state", "discarded")
            log.info("analysis_results_discarded", analysis_id=analysis.id, reason="no longer running")
            return
        metrics.observe_stage(Stage.STORE.value, time.perf_counter() - began)
        metrics.CONVERSATIONS_PROCESSED.labels(stage=Stage.STORE.value).inc(analysis.conversation_count)
        metrics.ANALYSES_TOTAL.labels(state=AnalysisState.SUCCEEDED.value).inc()
        metrics.CONVERSATIONS_WITHHELD.inc(membership.withheld)
        live.advance(Stage.STORE, analysis.conversation_count)
        trace.get_current_span().set_attribute("briefxai.analysis.state", "succeeded")
        log.info(
            "analysis_succeeded",
            analysis_id=analysis.id,
            conversations=analysis.conversation_count,
            fitted=analysis.conversation_count if sample is None else len(sample),
            clusters=len(output.clusters),
            k=output.k,
        )
