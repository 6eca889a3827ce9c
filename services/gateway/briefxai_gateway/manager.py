"""The analysis lifecycle behind the public API: create/upload, get/list/watch, cancel, delete,
results. No gRPC here; ``servicer.py`` translates.

A façade over the parts that do the work: ``intake.py`` (option resolution, inline checks),
``uploads.py`` (streamed batches), ``scheduler.py`` (admission, queue, resume at startup, waiting
out downstream outages), ``paging.py`` (page sizes and tokens), ``assigner.py`` (AssignConversations:
revisions of the results), the store and the live progress hub.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from briefxai_common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from briefxai_common.features import FeatureFlags
from briefxai_common.logging import get_logger

from . import metrics
from .assigner import Assigner
from .concurrency import in_thread
from .downstream import Downstreams
from .intake import Intake, RequestedOptions
from .models import Analysis, AnalysisState, Conversation, ResultsPage, Stage, WatchUpdate
from .outages import OutageGuard
from .paging import list_next_token, list_window, results_cursor, results_page, results_window
from .pipeline import Pipeline
from .progress import ProgressHub
from .redaction import redacted, withheld_view
from .revisions import AssignOutcome
from .scheduler import Scheduler
from .settings import GatewaySettings
from .store import DuplicateRequestId, Store
from .uploads import UploadHeader, UploadItem, receive_conversations
from .validation import Limits, Violations, check_request_id

if TYPE_CHECKING:
    from .health_watch import DownstreamHealth

log = get_logger(__name__)


def normalize_id(value: str) -> str:
    """Accepts ``<id>`` or the resource name ``analyses/<id>``."""
    value = value.strip()
    if value.startswith("analyses/"):
        value = value[len("analyses/") :]
    if not value:
        raise InvalidArgument("id", "must be non-empty")
    return value


class AnalysisManager:
    """What the servicer calls: one method per public RPC, plus start/stop and health."""

    def __init__(
        self,
        settings: GatewaySettings,
        store: Store,
        clients: Downstreams,
        health: DownstreamHealth | None = None,
        flags: FeatureFlags | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clients = clients
        self.limits = Limits.from_settings(settings)
        self.hub = ProgressHub()
        # The pipeline's calls wait out downstream outages; requests (create, assign) fail fast.
        self.outages = OutageGuard(settings, self.hub, health, flags)
        self.pipeline = Pipeline(settings, store, self.outages.clients(clients), self.hub)
        self.intake = Intake(settings, clients, self.limits)
        self.scheduler = Scheduler(settings, store, self.pipeline, self.outages)
        self.assigner = Assigner(settings, store, clients, self.limits)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Migrates the store, drops uploads that never finished, resumes unfinished analyses."""
        await in_thread(self.store.migrate)
        await self.scheduler.start()

    async def stop(self) -> None:
        """Stops every pipeline; their analyses stay PENDING/RUNNING in the store and resume later."""
        await self.scheduler.stop()

    @property
    def running_count(self) -> int:
        return self.scheduler.running_count

    # -- create ----------------------------------------------------------------------------------

    async def _existing(self, request_id: str) -> Analysis | None:
        if not request_id:
            return None
        return await in_thread(self.store.find_by_request_id, request_id)

    async def _after_duplicate(self, request_id: str) -> Analysis:
        existing = await in_thread(self.store.find_by_request_id, request_id)
        if existing is None:
            raise AlreadyExists(f"an upload with request_id {request_id!r} is still in progress")
        return existing

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
        options = await self.intake.resolve(requested, violations, "options")
        await asyncio.to_thread(self.intake.check_inline, conversations, violations)
        violations.raise_if_any()
        conversations = await redacted(conversations, self.settings.privacy)
        with self.scheduler.admission():
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
            self.scheduler.submit(analysis_id)
        metrics.ANALYSES_TOTAL.labels(state=AnalysisState.PENDING.value).inc()
        metrics.observe_stage(Stage.VALIDATE.value, time.perf_counter() - began)
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
        options = await self.intake.resolve(first.options, violations, "header.options")
        violations.raise_if_any()
        with self.scheduler.admission():
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
                count = await receive_conversations(
                    self.store, self.limits, analysis_id, items, self.settings.privacy
                )
                analysis = await in_thread(self.store.complete_upload, analysis_id, count)
            except BaseException:
                await in_thread(self.store.delete_analysis, analysis_id)
                raise
            self.scheduler.submit(analysis_id)
        metrics.ANALYSES_TOTAL.labels(state=AnalysisState.PENDING.value).inc()
        metrics.observe_stage(Stage.VALIDATE.value, time.perf_counter() - began)
        log.info("analysis_uploaded", analysis_id=analysis_id, conversations=count)
        return analysis

    # -- read --------------------------------------------------------------------------------------

    def _overlay_live(self, analysis: Analysis) -> Analysis:
        live = self.hub.live(analysis.id)
        if live is not None and not analysis.state.terminal:
            analysis.stage = live.stage
        if not analysis.state.terminal:
            analysis.warnings = [*analysis.warnings, *self.hub.waiting_notes(analysis.id)]
        return analysis

    async def get(self, analysis_id: str) -> Analysis:
        analysis_id = normalize_id(analysis_id)
        analysis = await in_thread(self.store.get_analysis, analysis_id)
        if analysis is None:
            raise NotFound(f"analysis {analysis_id!r} not found")
        return self._overlay_live(analysis)

    async def list(self, page_size: int, page_token: str) -> tuple[list[Analysis], str]:
        size, before = list_window(page_size, page_token)
        analyses, next_seq = await in_thread(self.store.list_analyses, size, before)
        return [self._overlay_live(a) for a in analyses], list_next_token(next_seq)

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

    async def cancel(self, analysis_id: str) -> Analysis:
        """Stops a PENDING/RUNNING analysis (CANCELLED); a terminal one is returned unchanged."""
        analysis = await self.get(analysis_id)
        if analysis.state.terminal:
            return analysis
        if await in_thread(self.store.finish, analysis.id, AnalysisState.CANCELLED, "cancelled by request"):
            metrics.ANALYSES_TOTAL.labels(state=AnalysisState.CANCELLED.value).inc()
            log.info("analysis_cancelled", analysis_id=analysis.id)
        await self.scheduler.withdraw(analysis.id)
        self.hub.notify(analysis.id)
        return await self.get(analysis.id)

    async def delete(self, analysis_id: str) -> None:
        """Stops the analysis if it runs and deletes every row stored for it."""
        analysis = await self.get(analysis_id)
        if not analysis.state.terminal and await in_thread(
            self.store.finish, analysis.id, AnalysisState.CANCELLED, "deleted"
        ):
            metrics.ANALYSES_TOTAL.labels(state=AnalysisState.CANCELLED.value).inc()
        await self.scheduler.withdraw(analysis.id)
        if not await in_thread(self.store.delete_analysis, analysis.id):
            raise NotFound(f"analysis {analysis.id!r} not found")
        self.assigner.forget(analysis.id)
        self.hub.notify(analysis.id)
        log.info("analysis_deleted", analysis_id=analysis.id)

    # -- results ---------------------------------------------------------------------------------

    async def results(
        self, analysis_id: str, page_size: int, page_token: str, revision: int | None = None
    ) -> ResultsPage:
        """One page of ``revision`` of the results (None: the newest; a page token continues its own)."""
        analysis = await self.get(analysis_id)
        if analysis.state is not AnalysisState.SUCCEEDED:
            raise FailedPrecondition(
                f"analysis {analysis.id!r} is {analysis.state.value.upper()}; results exist once it has SUCCEEDED"
            )
        _, continued = results_cursor(analysis, page_token)
        if continued is not None and revision is not None and continued != revision:
            raise InvalidArgument(
                "revision", f"the page token continues revision {continued}, not {revision}; leave it unset"
            )
        chosen = continued if continued is not None else revision
        chosen = analysis.results_revision if chosen is None else chosen
        summary = None
        if chosen <= analysis.results_revision:
            summary = await in_thread(self.store.revision_summary, analysis.id, chosen)
        if summary is None:
            raise InvalidArgument(
                "page_token" if continued is not None else "revision",
                f"analysis {analysis.id!r} has revisions 0..{analysis.results_revision}",
            )
        start, end = results_window(analysis, page_size, page_token, summary.total)
        clusters = await in_thread(self.store.load_clusters_at, analysis.id, chosen) if not page_token else []
        own_end = min(end, analysis.conversation_count)
        rows = (
            await in_thread(self.store.load_result_rows, analysis.id, start, own_end)
            if start < own_end
            else []
        )
        added = []
        if end > analysis.conversation_count:
            first = max(start, analysis.conversation_count)
            added = await in_thread(self.store.load_added_results, analysis.id, chosen, first, end)
        page = results_page(analysis, clusters, rows, end, added=added, summary=summary)
        if any(item.withheld for item in page.conversations):
            definitions = await in_thread(self.store.facet_definitions, analysis.id) or []
            page.conversations = withheld_view(page.conversations, definitions)
        return page

    # -- assign ------------------------------------------------------------------------------------

    async def assign(
        self, analysis_id: str, conversations: Sequence[Conversation], request_id: str
    ) -> AssignOutcome:
        """New conversations into a SUCCEEDED analysis as a new revision of its results (``assigner.py``)."""
        analysis = await self.get(analysis_id)
        return await self.assigner.assign(analysis, conversations, request_id)

    # -- health ------------------------------------------------------------------------------------

    def health_info(self) -> dict[str, object]:
        return {
            "analyses_running": self.scheduler.running_count,
            "analyses_queued": self.scheduler.queued_count,
            "max_concurrent_analyses": self.settings.max_concurrent_analyses,
            "store": self.store.dialect,
        }
