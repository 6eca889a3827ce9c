"""The analysis lifecycle behind the public API: create/upload, admission, scheduling, resume,
get/list/watch, cancel, delete, results. No gRPC here; ``servicer.py`` translates.

Admission: at most ``max_concurrent_analyses`` run at once; up to ``max_queued_analyses`` more wait
as PENDING (oldest first); beyond that a new analysis is refused with RESOURCE_EXHAUSTED. Analyses
found PENDING or RUNNING at startup are resumed from their checkpoints (they are not counted
against the queue limit: they were accepted already).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import structlog

from briefxai_common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from briefxai_common.logging import get_logger

from . import metrics
from .downstream import DownstreamError, Downstreams
from .models import (
    Analysis,
    AnalysisOptions,
    AnalysisState,
    Conversation,
    ConversationResult,
    ResultsPage,
    Stage,
    WatchUpdate,
)
from .pipeline import Pipeline, in_thread
from .progress import ProgressHub
from .settings import GatewaySettings
from .store import DuplicateRequestId, Store
from .validation import (
    Limits,
    Violations,
    check_conversation_count,
    check_conversations,
    check_request_id,
    resolve_options,
)

log = get_logger(__name__)

LIST_DEFAULT_PAGE = 20
LIST_MAX_PAGE = 100
RESULTS_DEFAULT_PAGE = 100
RESULTS_MAX_PAGE = 1000
# Uploaded conversations are written to the store in chunks of at least this many.
UPLOAD_FLUSH = 1000


@dataclass(slots=True)
class RequestedOptions:
    """Options as the client sent them, before defaults."""

    options: AnalysisOptions
    embed_text_set: bool = False
    embed_text_known: bool = True


@dataclass(slots=True)
class UploadHeader:
    options: RequestedOptions
    request_id: str


UploadItem = UploadHeader | list[Conversation]


def _encode_token(payload: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_token(token: str) -> dict[str, object]:
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument("page_token", "not a page token this service issued") from exc
    if not isinstance(payload, dict):
        raise InvalidArgument("page_token", "not a page token this service issued")
    return payload


def _page_size(requested: int, default: int, maximum: int) -> int:
    """0 means the default; values above the maximum are lowered to it (AIP-158)."""
    return default if requested <= 0 else min(requested, maximum)


def normalize_id(value: str) -> str:
    """Accepts ``<id>`` or the resource name ``analyses/<id>``."""
    value = value.strip()
    if value.startswith("analyses/"):
        value = value[len("analyses/") :]
    if not value:
        raise InvalidArgument("id", "must be non-empty")
    return value


class AnalysisManager:
    def __init__(self, settings: GatewaySettings, store: Store, clients: Downstreams) -> None:
        self.settings = settings
        self.store = store
        self.clients = clients
        self.limits = Limits.from_settings(settings)
        self.hub = ProgressHub()
        self.pipeline = Pipeline(settings, store, clients, self.hub)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._queue: deque[str] = deque()
        self._reserved = 0
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Migrates the store, drops uploads that never finished, resumes unfinished analyses."""
        await in_thread(self.store.migrate)
        for analysis_id in await in_thread(self.store.abandoned_upload_ids):
            await in_thread(self.store.delete_analysis, analysis_id)
            log.info("abandoned_upload_deleted", analysis_id=analysis_id)
        resumed = await in_thread(self.store.active_analysis_ids)
        for analysis_id in resumed:
            log.info("analysis_resume_scheduled", analysis_id=analysis_id)
            self._submit(analysis_id)

    async def stop(self) -> None:
        """Stops every pipeline; their analyses stay PENDING/RUNNING in the store and resume later."""
        self._stopping = True
        self._queue.clear()
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    @property
    def running_count(self) -> int:
        return len(self._running)

    # -- scheduling ------------------------------------------------------------------------------

    @contextmanager
    def _admission(self) -> Iterator[None]:
        capacity = self.settings.max_concurrent_analyses + self.settings.max_queued_analyses
        if len(self._running) + len(self._queue) + self._reserved >= capacity:
            raise ResourceExhausted(
                f"too many analyses: {len(self._running)} running and {len(self._queue)} queued "
                f"(limit {self.settings.max_concurrent_analyses} running + {self.settings.max_queued_analyses} "
                "queued); retry later"
            )
        self._reserved += 1
        try:
            yield
        finally:
            self._reserved -= 1

    def _submit(self, analysis_id: str) -> None:
        if self._stopping or analysis_id in self._running or analysis_id in self._queue:
            return
        if len(self._running) < self.settings.max_concurrent_analyses:
            self._launch(analysis_id)
        else:
            self._queue.append(analysis_id)

    def _launch(self, analysis_id: str) -> None:
        task = asyncio.create_task(self._run(analysis_id), name=f"analysis-{analysis_id}")
        self._running[analysis_id] = task

    async def _run(self, analysis_id: str) -> None:
        # This task runs in its own copy of the context: the binding stays on its own log lines.
        structlog.contextvars.bind_contextvars(analysis_id=analysis_id)
        metrics.ANALYSES_RUNNING.inc()
        try:
            await self.pipeline.run(analysis_id)
        finally:
            metrics.ANALYSES_RUNNING.dec()
            self._running.pop(analysis_id, None)
            while (
                self._queue
                and not self._stopping
                and len(self._running) < self.settings.max_concurrent_analyses
            ):
                self._launch(self._queue.popleft())

    # -- create ----------------------------------------------------------------------------------

    async def _known_facets(self, requested: RequestedOptions) -> list[str] | None:
        """Facet names the facets service offers, or None when it cannot be asked right now (the
        pipeline checks again and fails the analysis if a name is unknown)."""
        if not requested.options.facets and not self.settings.defaults.facets:
            return []
        try:
            # One deadline for the whole lookup, retries included: a create never waits long on it.
            async with asyncio.timeout(self.settings.metadata_deadline_seconds):
                definitions = await self.clients.facets.list_facets()
        except (DownstreamError, TimeoutError) as exc:
            reason = exc.describe() if isinstance(exc, DownstreamError) else "ListFacets timed out"
            log.warning("facet_names_unchecked", error=reason)
            return None
        return [d.name for d in definitions]

    async def _resolve(
        self, requested: RequestedOptions, violations: Violations, prefix: str
    ) -> AnalysisOptions:
        if not requested.embed_text_known:
            violations.add(f"{prefix}.embed_text", "unknown value")
        known = await self._known_facets(requested)
        return resolve_options(
            requested.options,
            embed_text_set=requested.embed_text_set,
            defaults=self.settings.defaults,
            limits=self.limits,
            known_facets=known,
            violations=violations,
            prefix=prefix,
        )

    async def _existing(self, request_id: str) -> Analysis | None:
        if not request_id:
            return None
        return await in_thread(self.store.find_by_request_id, request_id)

    async def _after_duplicate(self, request_id: str) -> Analysis:
        existing = await in_thread(self.store.find_by_request_id, request_id)
        if existing is None:
            raise AlreadyExists(f"an upload with request_id {request_id!r} is still in progress")
        return existing

    def _check_inline(self, conversations: Sequence[Conversation], violations: Violations) -> None:
        check_conversation_count(len(conversations), self.limits, violations, "conversations")
        if len(conversations) <= self.limits.max_conversations:
            check_conversations(conversations, self.limits, violations)

    async def create(
        self, conversations: Sequence[Conversation], requested: RequestedOptions, request_id: str
    ) -> Analysis:
        """Validates, stores and schedules an analysis of inline conversations. Idempotent on request_id."""
        began = time.perf_counter()
        violations = Violations()
        check_request_id(request_id, violations)
        violations.raise_if_any()
        existing = await self._existing(request_id)
        if existing is not None:
            return existing
        options = await self._resolve(requested, violations, "options")
        await asyncio.to_thread(self._check_inline, conversations, violations)
        violations.raise_if_any()
        with self._admission():
            analysis_id = uuid.uuid4().hex
            try:
                analysis = await in_thread(
                    lambda: self.store.create_analysis(
                        analysis_id,
                        request_id=request_id,
                        options=options,
                        batch_size=self.settings.batch_size,
                        conversations=conversations,
                    )
                )
            except DuplicateRequestId:
                return await self._after_duplicate(request_id)
            self._submit(analysis_id)
        metrics.ANALYSES_TOTAL.labels(state=AnalysisState.PENDING.value).inc()
        metrics.STAGE_SECONDS.labels(stage=Stage.VALIDATE.value).observe(time.perf_counter() - began)
        log.info("analysis_created", analysis_id=analysis_id, conversations=len(conversations))
        return analysis

    async def upload(self, items: AsyncIterator[UploadItem]) -> Analysis:
        """A client stream: the header first, then batches. Conversation field paths count across
        the whole stream (``conversations[1500].id`` is the 1501st conversation uploaded)."""
        began = time.perf_counter()
        first = await anext(items, None)
        if not isinstance(first, UploadHeader):
            raise InvalidArgument("header", "the first message of the stream must be the header")
        violations = Violations()
        check_request_id(first.request_id, violations, "header.request_id")
        violations.raise_if_any()
        existing = await self._existing(first.request_id)
        if existing is not None:
            return existing
        options = await self._resolve(first.options, violations, "header.options")
        violations.raise_if_any()
        with self._admission():
            analysis_id = uuid.uuid4().hex
            try:
                await in_thread(
                    lambda: self.store.create_analysis(
                        analysis_id,
                        request_id=first.request_id,
                        options=options,
                        batch_size=self.settings.batch_size,
                        upload_complete=False,
                    )
                )
            except DuplicateRequestId:
                return await self._after_duplicate(first.request_id)
            try:
                count = await self._receive(analysis_id, items)
                analysis = await in_thread(self.store.complete_upload, analysis_id, count)
            except BaseException:
                await in_thread(self.store.delete_analysis, analysis_id)
                raise
            self._submit(analysis_id)
        metrics.ANALYSES_TOTAL.labels(state=AnalysisState.PENDING.value).inc()
        metrics.STAGE_SECONDS.labels(stage=Stage.VALIDATE.value).observe(time.perf_counter() - began)
        log.info("analysis_uploaded", analysis_id=analysis_id, conversations=count)
        return analysis

    async def _receive(self, analysis_id: str, items: AsyncIterator[UploadItem]) -> int:
        """Validates and stores uploaded batches; returns how many conversations arrived."""
        seen: set[str] = set()
        count = 0
        stored = 0
        pending: list[Conversation] = []
        async for item in items:
            if isinstance(item, UploadHeader):
                raise InvalidArgument("header", "only the first message of the stream may be the header")
            violations = Violations()
            if count + len(item) > self.limits.max_conversations:
                check_conversation_count(count + len(item), self.limits, violations, "conversations")
                violations.raise_if_any()
            await asyncio.to_thread(
                check_conversations, item, self.limits, violations, offset=count, seen_ids=seen
            )
            violations.raise_if_any()
            pending.extend(item)
            count += len(item)
            if len(pending) >= UPLOAD_FLUSH:
                await in_thread(self.store.append_conversations, analysis_id, stored, pending)
                stored += len(pending)
                pending = []
        if pending:
            await in_thread(self.store.append_conversations, analysis_id, stored, pending)
            stored += len(pending)
        violations = Violations()
        check_conversation_count(count, self.limits, violations, "conversations")
        violations.raise_if_any()
        return count

    # -- read --------------------------------------------------------------------------------------

    def _overlay_live(self, analysis: Analysis) -> Analysis:
        live = self.hub.live(analysis.id)
        if live is not None and not analysis.state.terminal:
            analysis.stage = live.stage
        return analysis

    async def get(self, analysis_id: str) -> Analysis:
        analysis_id = normalize_id(analysis_id)
        analysis = await in_thread(self.store.get_analysis, analysis_id)
        if analysis is None:
            raise NotFound(f"analysis {analysis_id!r} not found")
        return self._overlay_live(analysis)

    async def list(self, page_size: int, page_token: str) -> tuple[list[Analysis], str]:
        size = _page_size(page_size, LIST_DEFAULT_PAGE, LIST_MAX_PAGE)
        before: int | None = None
        if page_token:
            payload = _decode_token(page_token)
            seq = payload.get("before")
            if payload.get("kind") != "list" or not isinstance(seq, int):
                raise InvalidArgument("page_token", "not a page token of ListAnalyses")
            before = seq
        analyses, next_seq = await in_thread(self.store.list_analyses, size, before)
        token = _encode_token({"kind": "list", "before": next_seq}) if next_seq is not None else ""
        return [self._overlay_live(a) for a in analyses], token

    async def watch(self, analysis_id: str) -> AsyncIterator[WatchUpdate]:
        """Yields the analysis whenever its progress changes, the last time in a terminal state."""
        analysis_id = normalize_id(analysis_id)
        last: tuple[object, ...] | None = None
        while True:
            changed = self.hub.event(analysis_id)
            analysis = await self.get(analysis_id)
            live = self.hub.live(analysis_id)
            rate = live.current_rate() if live is not None else 0.0
            eta = live.eta_seconds() if live is not None and not analysis.state.terminal else -1.0
            if analysis.state is AnalysisState.SUCCEEDED:
                eta = 0.0
            key = (
                analysis.state,
                analysis.stage,
                tuple((p.done, p.total) for p in analysis.stage_progress()),
                tuple(analysis.warnings),
                analysis.error,
            )
            if key != last:
                last = key
                yield WatchUpdate(analysis, rate, eta)
            if analysis.state.terminal:
                return
            waiter = asyncio.ensure_future(changed.wait())
            done, _ = await asyncio.wait({waiter}, timeout=self.settings.watch_poll_seconds)
            if not done:
                waiter.cancel()

    # -- cancel, delete ------------------------------------------------------------------------------

    async def _stop_pipeline(self, analysis_id: str) -> None:
        if analysis_id in self._queue:
            self._queue.remove(analysis_id)
        task = self._running.get(analysis_id)
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    async def cancel(self, analysis_id: str) -> Analysis:
        """Stops a PENDING/RUNNING analysis (CANCELLED); a terminal one is returned unchanged."""
        analysis = await self.get(analysis_id)
        if analysis.state.terminal:
            return analysis
        if await in_thread(self.store.finish, analysis.id, AnalysisState.CANCELLED, "cancelled by request"):
            metrics.ANALYSES_TOTAL.labels(state=AnalysisState.CANCELLED.value).inc()
            log.info("analysis_cancelled", analysis_id=analysis.id)
        await self._stop_pipeline(analysis.id)
        self.hub.notify(analysis.id)
        return await self.get(analysis.id)

    async def delete(self, analysis_id: str) -> None:
        """Stops the analysis if it runs and deletes every row stored for it."""
        analysis = await self.get(analysis_id)
        if not analysis.state.terminal and await in_thread(
            self.store.finish, analysis.id, AnalysisState.CANCELLED, "deleted"
        ):
            metrics.ANALYSES_TOTAL.labels(state=AnalysisState.CANCELLED.value).inc()
        await self._stop_pipeline(analysis.id)
        if not await in_thread(self.store.delete_analysis, analysis.id):
            raise NotFound(f"analysis {analysis.id!r} not found")
        self.hub.notify(analysis.id)
        log.info("analysis_deleted", analysis_id=analysis.id)

    # -- results ---------------------------------------------------------------------------------

    async def results(self, analysis_id: str, page_size: int, page_token: str) -> ResultsPage:
        analysis = await self.get(analysis_id)
        if analysis.state is not AnalysisState.SUCCEEDED:
            raise FailedPrecondition(
                f"analysis {analysis.id!r} is {analysis.state.value.upper()}; results exist once it has SUCCEEDED"
            )
        size = _page_size(page_size, RESULTS_DEFAULT_PAGE, RESULTS_MAX_PAGE)
        start = 0
        if page_token:
            payload = _decode_token(page_token)
            offset = payload.get("offset")
            if (
                payload.get("kind") != "results"
                or payload.get("id") != analysis.id
                or not isinstance(offset, int)
            ):
                raise InvalidArgument(
                    "page_token", "not a page token of GetAnalysisResults for this analysis"
                )
            if not 0 <= offset <= analysis.conversation_count:
                raise InvalidArgument("page_token", "page token out of range")
            start = offset
        end = min(analysis.conversation_count, start + size)
        clusters = await in_thread(self.store.load_clusters, analysis.id) if not page_token else []
        rows = await in_thread(self.store.load_result_rows, analysis.id, start, end)
        conversations = [
            ConversationResult(
                conversation_id=conversation_id,
                facets=facets,
                cluster_id=row.cluster_id if row is not None else "",
                withheld=row.withheld if row is not None else True,
                point=(row.x, row.y) if row is not None and row.x is not None and row.y is not None else None,
            )
            for _, conversation_id, row, facets in rows
        ]
        token = (
            _encode_token({"kind": "results", "id": analysis.id, "offset": end})
            if end < analysis.conversation_count
            else ""
        )
        return ResultsPage(
            analysis=analysis,
            clusters=clusters,
            conversations=conversations,
            next_page_token=token,
            total_conversations=analysis.conversation_count,
            withheld_conversations=analysis.withheld_count,
            k=analysis.k,
            k_rule=analysis.k_rule,
        )

    # -- health ------------------------------------------------------------------------------------

    def health_info(self) -> dict[str, object]:
        return {
            "analyses_running": len(self._running),
            "analyses_queued": len(self._queue),
            "max_concurrent_analyses": self.settings.max_concurrent_analyses,
            "store": self.store.dialect,
        }
