"""Admission and scheduling of analyses: which run, which wait, and what happens at start and stop.

At most ``max_concurrent_analyses`` run at once; up to ``max_queued_analyses`` more wait as PENDING
(oldest first); beyond that a new analysis is refused with RESOURCE_EXHAUSTED. Analyses found
PENDING or RUNNING at startup are resumed from their checkpoints (they are not counted against the
queue limit: they were accepted already).

Each analysis is traced as a trace of its own, linked to the span of the call that created it (kept
here from ``submit`` until the analysis runs); a resumed one has no such call to link to.

Leases (several gateways on one store, ``store/leases.py``): an analysis runs only after this gateway
has claimed its lease; a claim another gateway won is skipped. Every ``analysis_heartbeat_seconds`` the
gateway renews the leases of its running analyses (one it no longer holds, or that finished elsewhere,
is stopped here; so is one it could not renew for ``analysis_lease_seconds``, since another gateway may
have taken it by then) and, with a slot free, schedules analyses whose lease is free or expired: those
queued on a busy gateway, and those of a gateway that died. A finished or stopped run releases its lease.

Outages: analyses wait out a downstream that is down (``outages.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import structlog
from opentelemetry.trace import SpanContext

from briefxai_common.errors import ResourceExhausted
from briefxai_common.logging import get_logger
from briefxai_common.tracing import current_span_context

from . import metrics
from .concurrency import in_thread
from .models import Stage
from .outages import CURRENT_ANALYSIS, OutageGuard
from .pipeline import Pipeline
from .security.principal import tenant_scope
from .settings import GatewaySettings
from .store import Store

if TYPE_CHECKING:
    pass

log = get_logger(__name__)

# What a refused create is told to wait: an analysis of the bundled sample takes about this long.
ANALYSIS_QUEUE_RETRY_SECONDS = 10.0


class Scheduler:
    """The admission limit, the queue of PENDING analyses and the tasks of the running ones."""

    def __init__(
        self,
        settings: GatewaySettings,
        store: Store,
        pipeline: Pipeline,
        outages: OutageGuard | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.pipeline = pipeline
        self.outages = outages
        self._resumed: set[str] = set()  # resumed at startup and not yet running
        self._running: dict[str, asyncio.Task[None]] = {}
        self._queue: deque[str] = deque()
        self._origins: dict[str, SpanContext] = {}  # the creating call's span, until the analysis runs
        self._reserved = 0
        self._stopping = False
        # Analyses whose lease this gateway holds: when it was taken or last renewed (monotonic, taken
        # before the call that did it).
        self._leases: dict[str, float] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        metrics.watch_queue(lambda: self.running_count, lambda: self.queued_count)

    @property
    def running_count(self) -> int:
        return len(self._running)

    @property
    def queued_count(self) -> int:
        return len(self._queue)

    async def start(self) -> None:
        """Drops uploads that never finished, schedules the unfinished analyses no other gateway holds,
        and starts the lease heartbeat."""
        for tenant_id, analysis_id in await in_thread(self.store.abandoned_uploads):
            with tenant_scope(tenant_id):
                await in_thread(self.store.delete_analysis, analysis_id)
            log.info("abandoned_upload_deleted", analysis_id=analysis_id)
        freed = await in_thread(self.store.release_dead_local_leases)
        if freed:
            log.info("dead_local_leases_released", analyses=freed)
        resumed = await in_thread(self.store.claimable_analysis_ids)
        self._heartbeat = asyncio.create_task(self._keep_leases(), name="analysis-leases")
        for analysis_id in resumed:
            log.info("analysis_resume_scheduled", analysis_id=analysis_id)
            self._resumed.add(analysis_id)
            self.submit(analysis_id)

    async def stop(self) -> None:
        """Stops every pipeline; their analyses stay PENDING/RUNNING in the store, their leases released,
        and resume later (here or on another gateway)."""
        self._stopping = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.wait({self._heartbeat})
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
        CURRENT_ANALYSIS.set(analysis_id)
        metrics.ANALYSES_RUNNING.inc()
        try:
            if not await self._claim(analysis_id):
                return
            if analysis_id in self._resumed and self.outages is not None:
                await self.outages.before_resume(analysis_id, ("embedding", "facets", "clustering"))
            self._resumed.discard(analysis_id)
            await self.pipeline.run(analysis_id, origin=self._origins.pop(analysis_id, None))
        finally:
            metrics.ANALYSES_RUNNING.dec()
            held = self._leases.pop(analysis_id, None) is not None
            self._resumed.discard(analysis_id)
            if self.outages is not None:
                self.outages.forget(analysis_id)
            try:
                if held:  # still in _running: the id is not launched again before its release
                    await self._release(analysis_id)
            finally:
                self._running.pop(analysis_id, None)
                while (
                    self._queue
                    and not self._stopping
                    and len(self._running) < self.settings.max_concurrent_analyses
                ):
                    self._launch(self._queue.popleft())

    # -- leases ----------------------------------------------------------------------------------------

    async def _claim(self, analysis_id: str) -> bool:
        """Takes the analysis's lease; False when another gateway holds it, it is finished or gone, or
        the store failed (it stays claimable: the heartbeat tries again)."""
        began = time.monotonic()
        try:
            attempt = await in_thread(
                self.store.claim_analysis, analysis_id, self.settings.analysis_lease_seconds
            )
        except Exception as exc:
            log.warning(
                "analysis_claim_failed", analysis_id=analysis_id, error=f"{type(exc).__name__}: {exc}"
            )
            return False
        if attempt is None:
            log.info("analysis_not_claimed", analysis_id=analysis_id, reason="held elsewhere or finished")
            return False
        self._leases[analysis_id] = began
        log.info("analysis_claimed", analysis_id=analysis_id, attempt=attempt, owner=self.store.owner)
        return True

    async def _release(self, analysis_id: str) -> None:
        try:
            await in_thread(self.store.release_lease, analysis_id)
        except Exception as exc:
            log.warning(
                "analysis_lease_release_failed",
                analysis_id=analysis_id,
                error=f"{type(exc).__name__}: {exc}",
                note="the lease expires by itself",
            )

    async def _keep_leases(self) -> None:
        """The heartbeat: renews this gateway's leases, then takes claimable analyses into free slots."""
        while True:
            await asyncio.sleep(self.settings.analysis_heartbeat_seconds)
            try:
                await self._renew()
                await self._take_claimable()
            except Exception as exc:
                log.warning("analysis_lease_heartbeat_failed", error=f"{type(exc).__name__}: {exc}")
            self._stop_expired()

    async def _renew(self) -> None:
        held = list(self._leases)
        began = time.monotonic()
        renewed = await in_thread(self.store.renew_leases, held, self.settings.analysis_lease_seconds)
        for analysis_id in held:
            if analysis_id not in self._leases:
                continue  # its run ended meanwhile
            if analysis_id in renewed:
                self._leases[analysis_id] = began
                continue
            log.warning(
                "analysis_lease_lost",
                analysis_id=analysis_id,
                reason="another gateway holds it, or it finished or was deleted elsewhere",
            )
            self._stop_leased(analysis_id)

    def _stop_expired(self) -> None:
        """Stops the runs whose lease was not renewed for a whole lease period: by now another gateway may
        have taken them over."""
        now = time.monotonic()
        for analysis_id, renewed in list(self._leases.items()):
            live = self.pipeline.hub.live(analysis_id)
            if live is not None and live.stage is Stage.STORE:
                # The final save is one transaction fenced by the lease (``hold_lease``): it began while
                # this gateway held the lease and locks it until it commits, so nobody can take the run
                # over meanwhile. A save longer than the lease (a million rows) blocks the renewals
                # behind its own lock; cancelling it then would only lose the run's bookkeeping.
                continue
            if now - renewed > self.settings.analysis_lease_seconds:
                log.warning(
                    "analysis_lease_expired", analysis_id=analysis_id, seconds=round(now - renewed, 1)
                )
                self._stop_leased(analysis_id)

    def _stop_leased(self, analysis_id: str) -> None:
        """Cancels the run of an analysis this gateway no longer holds (it stays as it is in the store).

        Only while its id is in ``_leases``: then its task is still inside the run, never in the
        bookkeeping of its ``finally``."""
        self._leases.pop(analysis_id, None)
        task = self._running.get(analysis_id)
        if task is not None:
            task.cancel()

    async def _take_claimable(self) -> None:
        """Schedules analyses nobody holds (queued on another gateway, or its lease expired after it
        died), as many as this gateway has free slots."""
        free = self.settings.max_concurrent_analyses - len(self._running) - len(self._queue)
        if free <= 0 or self._stopping:
            return
        ours = set(self._running) | set(self._queue)
        found = await in_thread(self.store.claimable_analysis_ids, free + len(ours))
        for analysis_id in [a for a in found if a not in ours][:free]:
            log.info("analysis_claimable_scheduled", analysis_id=analysis_id)
            self._resumed.add(analysis_id)  # taken over: it waits for its downstreams like a resumed one
            self.submit(analysis_id)
