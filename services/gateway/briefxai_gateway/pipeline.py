"""Runs one analysis: facets -> embed (per batch, batches overlapping) -> cluster -> store.

Conversations are read back from the store one batch at a time (``batch_size``, fixed per analysis
at creation), so memory holds at most ``max_inflight_batches`` batches of raw text. For each batch:

- facets: ``ExtractFacets``; values and the (facets, batch) checkpoint are written in one transaction;
- embed: the text chosen by ``options.embed_text`` (``embed_text.py``) goes to ``EmbedTexts``; the
  packed vectors and the (embed, batch) checkpoint are written in one transaction.

Facets and embedding of one batch run side by side, except with ``REQUEST_SUMMARY`` where the
embedded text is the ``request`` facet (``batching.py``, shared with AssignConversations). A resumed
run skips every (stage, batch) that has a checkpoint. Then one ``StreamClusterEmbeddings`` call sends every vector, ``CLUSTER_CHUNK_VECTORS`` at
a time, each chunk read back from the store (vectors, ids, user ids, naming texts) only when the call
is ready to send it, so the gateway never holds every vector or string at once. Then clusters (with
facet distributions), assignments, map points, the last checkpoints and SUCCEEDED are written in one
transaction.

Failures of downstream services (after retries, or an open breaker) end the analysis FAILED with a
message naming the service; cancellation (user cancel or shutdown) propagates as CancelledError.

Each run is one trace: an ``analysis`` root span (a new trace, linked to the span of the call that
created the analysis) with a span per stage (``validate``; ``facets`` and ``embed`` per batch;
``cluster``; ``store``) and a ``store.<operation>`` span per store call. The downstream calls made in
a stage are its children, and carry ``x-request-id`` (the analysis id) and ``x-analysis-id``.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import structlog
from opentelemetry import trace
from opentelemetry.trace import Span, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from briefxai_common import tracing
from briefxai_common.logging import get_logger
from briefxai_common.memory import release_free_memory

from . import metrics
from .batching import FacetValues, bounded, facets_and_embedding, text_budget, texts_to_embed
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
    Conversation,
    FacetDefinition,
    FacetValue,
    Stage,
)
from .progress import LiveProgress, ProgressHub
from .settings import GatewaySettings
from .store import Store, decode_messages
from .validation import facets_to_extract

log = get_logger(__name__)
tracer = trace.get_tracer(__name__)
T = TypeVar("T")

# Vectors per StreamClusterEmbeddings chunk: 8192 x 384 float32 is 12.6 MB per message.
CLUSTER_CHUNK_VECTORS = 8192


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
            span.set_attributes(
                {"briefxai.facets": [d.name for d in definitions], "briefxai.embedding.model": info.model}
            )
        await self._batches(analysis, live, budget)
        release_free_memory()  # the batches' buffers, before the clustering input is read
        output = await self._cluster(analysis, live)
        await self._store(analysis, live, output, definitions)
        del output
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
            for per_conversation in values:
                for value in per_conversation:
                    if value.failed:
                        warnings[f"facet_failed:{value.facet}"] += 1
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
            embedded = await self.clients.embedding.embed(texts, budget.tokens)
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

    def _clustering_input(self, analysis: Analysis) -> ClusteringInput:
        """Every vector with its id, user id and naming text, in order, read lazily chunk by chunk."""
        count = analysis.conversation_count

        async def chunks() -> AsyncIterator[ClusteringChunk]:
            for start in range(0, count, CLUSTER_CHUNK_VECTORS):
                end = min(count, start + CLUSTER_CHUNK_VECTORS)
                yield await self._db(
                    self._clustering_chunk, analysis.id, start, end, operation="load_clustering_chunk"
                )

        options = analysis.options
        return ClusteringInput(
            count=count,
            chunks=chunks,
            k=options.k,
            hierarchy_depth=options.hierarchy_depth,
            min_cluster_size=options.min_cluster_size,
            min_distinct_users=options.min_distinct_users,
            seed=options.seed,
        )

    def _clustering_chunk(self, analysis_id: str, start: int, end: int) -> ClusteringChunk:
        """Blocking: the vectors of ordinals [start, end), their ids, user ids and naming texts."""
        vectors = self.store.load_vector_range(analysis_id, start, end)
        budget = self.settings.naming_text_chars
        requests = self.store.request_texts_by_index(analysis_id, start, end)
        with_messages = len(requests) < end - start
        ids: list[str] = []
        user_ids: list[str] = []
        texts: list[str] = []
        for ordinal, conversation_id, user_id, messages in self.store.iter_conversation_rows(
            analysis_id, with_messages=with_messages, start=start, end=end
        ):
            ids.append(conversation_id)
            user_ids.append(user_id)
            summary = requests.get(ordinal, "")
            decoded = decode_messages(messages) if messages is not None and not summary else []
            texts.append(naming_text(summary, decoded, budget))
        if len(ids) != vectors.count:
            raise PipelineError(
                f"{len(ids)} conversations stored but {vectors.count} vectors at ordinals [{start}, {end})"
            )
        return ClusteringChunk(vectors=vectors, ids=ids, user_ids=user_ids, texts=texts)

    async def _cluster(self, analysis: Analysis, live: LiveProgress) -> ClusteringOutput:
        live.stage = Stage.CLUSTER
        live.begin(Stage.CLUSTER)
        self.hub.notify(analysis.id)
        began = time.perf_counter()
        with self._stage(Stage.CLUSTER, analysis, size=analysis.conversation_count) as span:
            output = await self.clients.clustering.cluster(self._clustering_input(analysis))
            span.set_attributes(
                {
                    "briefxai.cluster.k": output.k,
                    "briefxai.cluster.clusters": len(output.clusters),
                    "briefxai.cluster.withheld": output.withheld_count,
                }
            )
        metrics.observe_stage(Stage.CLUSTER.value, time.perf_counter() - began)
        metrics.CONVERSATIONS_PROCESSED.labels(stage=Stage.CLUSTER.value).inc(analysis.conversation_count)
        live.advance(Stage.CLUSTER, analysis.conversation_count)
        return output

    def _save(
        self, analysis: Analysis, output: ClusteringOutput, definitions: Sequence[FacetDefinition]
    ) -> bool:
        """Blocking: facet distributions per cluster, then everything in one transaction."""
        rows: list[AssignmentRow] = []
        cluster_of: list[str] = []
        for ordinal, (conversation_id, cluster_id, withheld) in enumerate(output.assignments):
            point = None if withheld else output.points.get(conversation_id)
            rows.append(
                AssignmentRow(
                    ordinal=ordinal,
                    conversation_id=conversation_id,
                    cluster_id="" if withheld else cluster_id,
                    withheld=withheld,
                    x=point[0] if point else None,
                    y=point[1] if point else None,
                )
            )
            cluster_of.append("" if withheld else cluster_id)
        builder = DistributionBuilder({d.name: d for d in definitions})
        for ordinal, facet, text, number in self.store.iter_facet_rows(analysis.id):
            if ordinal < len(cluster_of):
                builder.add(cluster_of[ordinal], facet, text, number)
        distributions = builder.build(output.clusters)
        flag_languages(output.clusters, distributions)
        withheld_count = output.withheld_count or sum(1 for row in rows if row.withheld)
        meta = {
            "k": output.k,
            "k_rule": output.k_rule,
            "base_algorithm": output.base_algorithm,
            "map_algorithm": output.map_algorithm,
            "withheld_count": withheld_count,
        }
        warnings = {"withheld": withheld_count} if withheld_count else {}
        return self.store.save_results(analysis.id, output.clusters, distributions, rows, meta, warnings)

    async def _store(
        self,
        analysis: Analysis,
        live: LiveProgress,
        output: ClusteringOutput,
        definitions: Sequence[FacetDefinition],
    ) -> None:
        live.stage = Stage.STORE
        live.begin(Stage.STORE)
        self.hub.notify(analysis.id)
        began = time.perf_counter()
        with self._stage(Stage.STORE, analysis, size=analysis.conversation_count):
            saved = await self._db(self._save, analysis, output, definitions, operation="save_results")
        if not saved:
            trace.get_current_span().set_attribute("briefxai.analysis.state", "discarded")
            log.info("analysis_results_discarded", analysis_id=analysis.id, reason="no longer running")
            return
        metrics.observe_stage(Stage.STORE.value, time.perf_counter() - began)
        metrics.CONVERSATIONS_PROCESSED.labels(stage=Stage.STORE.value).inc(analysis.conversation_count)
        metrics.ANALYSES_TOTAL.labels(state=AnalysisState.SUCCEEDED.value).inc()
        metrics.CONVERSATIONS_WITHHELD.inc(sum(1 for _, _, withheld in output.assignments if withheld))
        live.advance(Stage.STORE, analysis.conversation_count)
        trace.get_current_span().set_attribute("briefxai.analysis.state", "succeeded")
        log.info(
            "analysis_succeeded",
            analysis_id=analysis.id,
            conversations=analysis.conversation_count,
            clusters=len(output.clusters),
            k=output.k,
        )
