"""Admission and scheduling of analyses: which run, which wait, and what happens at start and stop.

At most ``max_concurrent_analyses`` run at once; up to ``max_queued_analyses`` more wait as PENDING
(oldest first); beyond that a new analysis is refused with RESOURCE_EXHAUSTED. Analyses found
PENDING or RUNNING at startup are resumed from their checkpoints (they are not counted against the
queue limit: they were accepted already).

Each analysis is traced as a trace of its own, linked to the span of the call that created it (kept
here from ``submit`` until the analysis runs); a resumed one has no such call to link to.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import structlog
from opentelemetry.trace import SpanContext

from briefxai_common.errors import ResourceExhausted
from briefxai_common.logging import get_logger
from briefxai_common.tracing import current_span_context

from . import metrics
from .concurrency import in_thread
from .pipeline import Pipeline
from .settings import GatewaySettings
from .store import Store

log = get_logger(__name__)

# What a refused create is told to wait: an analysis of the bundled sample takes about this long.
ANALYSIS_QUEUE_RETRY_SECONDS = 10.0


class Scheduler:
    """The admission limit, the queue of PENDING analyses and the tasks of the running ones."""

    def __init__(self, settings: GatewaySettings, store: Store, pipeline: Pipeline) -> None:
        self.settings = settings
        self.store = store
        self.pipeline = pipeline
        self._running: dict[str, asyncio.Task[None]] = {}
        self._queue: deque[str] = deque()
        self._origins: dict[str, SpanContext] = {}  # the creating call's span, until the analysis runs
        self._reserved = 0
        self._stopping = False
        metrics.watch_queue(lambda: self.running_count, lambda: self.queued_count)

    @property
    def running_count(self) -> int:
        return len(self._running)

    @property
    def queued_count(self) -> int:
        return len(self._queue)

    async def start(self) -> None:
        """Drops uploads that never finished and schedules the unfinished analyses again."""
        for analysis_id in await in_thread(self.store.abandoned_upload_ids):
            await in_thread(self.store.delete_analysis, analysis_id)
            log.info("abandoned_upload_deleted", analysis_id=analysis_id)
        resumed = await in_thread(self.store.active_analysis_ids)
        for analysis_id in resumed:
            log.info("analysis_resume_scheduled", analysis_id=analysis_id)
            self.submit(analysis_id)

    async def stop(self) -> None:
        """Stops every pipeline; their analyses stay PENDING/RUNNING in the store and resume later."""
        self._stopping = True
        self._queue.clear()
        self._origins.clear()
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    @contextmanager
    def admission(self) -> Iterator[None]:
        """Holds a place for one new analysis while it is stored; ResourceExhausted when full."""
        capacity = self.settings.max_concurrent_analyses + self.settings.max_queued_analyses
        if len(self._running) + len(self._queue) + self._reserved >= capacity:
            raise ResourceExhausted(
                f"too many analyses: {len(self._running)} running and {len(self._queue)} queued "
                f"(limit {self.settings.max_concurrent_analyses} running + {self.settings.max_queued_analyses} "
                "queued); retry later",
                reason="ANALYSIS_QUEUE_FULL",
                retry_after_seconds=ANALYSIS_QUEUE_RETRY_SECONDS,
                metadata={"running": str(len(self._running)), "queued": str(len(self._queue))},
            )
        self._reserved += 1
        try:
            yield
        finally:
            self._reserved -= 1

    def submit(self, analysis_id: str) -> None:
        """Runs the analysis now if a slot is free, else queues it (nothing while stopping)."""
        if self._stopping or analysis_id in self._running or analysis_id in self._queue:
            return
        origin = current_span_context()
        if origin is not None:
            self._origins[analysis_id] = origin
        if len(self._running) < self.settings.max_concurrent_analyses:
            self._launch(analysis_id)
        else:
            self._queue.append(analysis_id)

    async def withdraw(self, analysis_id: str) -> None:
        """Takes the analysis off the queue, or cancels its pipeline and waits for it to end."""
        if analysis_id in self._queue:
            self._queue.remove(analysis_id)
            self._origins.pop(analysis_id, None)
        task = self._running.get(analysis_id)
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    def _launch(self, analysis_id: str) -> None:
        task = asyncio.create_task(self._run(analysis_id), name=f"analysis-{analysis_id}")
        self._running[analysis_id] = task

    async def _run(self, analysis_id: str) -> None:
        # This task runs in its own copy of the context: the binding stays on its own log lines.
        structlog.contextvars.bind_contextvars(analysis_id=analysis_id)
        metrics.ANALYSES_RUNNING.inc()
        try:
            await self.pipeline.run(analysis_id, origin=self._origins.pop(analysis_id, None))
        finally:
            metrics.ANALYSES_RUNNING.dec()
            self._running.pop(analysis_id, None)
            while (
                self._queue
                and not self._stopping
                and len(self._running) < self.settings.max_concurrent_analyses
            ):
                self._launch(self._queue.popleft())
