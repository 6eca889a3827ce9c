"""The retention purge: every ``purge_interval_seconds``, analyses of every tenant created more than
``analysis_max_age_days`` ago are deleted with everything stored for them (conversations, facets,
embeddings, results, revisions), through the same path as DeleteAnalysis. No gRPC here.

A PENDING or RUNNING analysis is kept until it ends (a purge never cuts a run short; the next run after
it finishes deletes it). Each run records one audit event (actor ``system``, action
``retention.purge``, the count and ids in its details) while the purge is on, and then calls the
``on_run`` hook (the audit trail's own retention), also while the purge is off.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from briefxai_common.errors import NotFound
from briefxai_common.logging import get_logger

from ..concurrency import in_thread
from ..manager import AnalysisManager
from ..security_settings import RetentionSettings
from ..store.base import utcnow
from .audit import AuditEvent
from .principal import SYSTEM_ACTOR, tenant_scope

log = get_logger(__name__)

PURGE_ACTION = "retention.purge"
# The audit event of a run names no single tenant: the purge spans them all.
ALL_TENANTS = "*"


@dataclass
class PurgeReport:
    """One run: the cut-off, the analyses deleted and those kept because they still run (as
    ``tenant/id``), and those that failed to delete (logged; retried next run)."""

    cutoff: datetime | None
    purged: list[str] = field(default_factory=list)
    kept_running: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class RetentionJob:
    """``start()`` runs a purge now and then every ``settings.purge_interval_seconds``; ``stop()`` ends
    it (a run in progress finishes its current deletion first).

    ``on_run(now)``: called at the end of every run (the audit trail's retention); ``audit(event)``:
    records the run's audit event; ``clock``: the current time (tests)."""

    def __init__(
        self,
        manager: AnalysisManager,
        settings: RetentionSettings,
        *,
        on_run: Callable[[datetime], Awaitable[None]] | None = None,
        audit: Callable[[AuditEvent], Awaitable[None]] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.manager = manager
        self.settings = settings
        self.on_run = on_run
        self.audit = audit
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="retention-purge")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("retention_run_failed")
            await asyncio.sleep(self.settings.purge_interval_seconds)

    async def run_once(self) -> PurgeReport:
        """One purge run (off while ``analysis_max_age_days`` is 0), then the ``on_run`` hook."""
        now = self.clock()
        report = PurgeReport(cutoff=None)
        if self.settings.analysis_max_age_days > 0:
            report = await self._purge(now - timedelta(days=self.settings.analysis_max_age_days))
            await self._record(report)
        if self.on_run is not None:
            await self.on_run(now)
        return report

    async def _purge(self, cutoff: datetime) -> PurgeReport:
        report = PurgeReport(cutoff=cutoff)
        expired = await in_thread(self.manager.store.expired_analyses, cutoff)
        for item in expired:
            name = f"{item.tenant_id}/{item.analysis_id}"
            if not item.state.terminal:
                report.kept_running.append(name)
                continue
            with tenant_scope(item.tenant_id):
                try:
                    await self.manager.delete(item.analysis_id)
                except NotFound:
                    continue  # deleted meanwhile
                except Exception:
                    log.exception(
                        "retention_delete_failed", analysis_id=item.analysis_id, tenant_id=item.tenant_id
                    )
                    report.failed.append(name)
                    continue
            report.purged.append(name)
        if report.purged or report.failed:
            log.info(
                "retention_purged",
                purged=len(report.purged),
                kept_running=len(report.kept_running),
                failed=len(report.failed),
                cutoff=cutoff.isoformat(),
            )
        return report

    async def _record(self, report: PurgeReport) -> None:
        if self.audit is None:
            return
        await self.audit(
            AuditEvent(
                actor=SYSTEM_ACTOR,
                tenant_id=ALL_TENANTS,
                peer="",
                rpc="",
                resource="analyses",
                action=PURGE_ACTION,
                outcome="failed" if report.failed else "ok",
                status_code="INTERNAL" if report.failed else "OK",
                details={
                    "count": len(report.purged),
                    "analysis_ids": report.purged,
                    "kept_running": report.kept_running,
                    "failed": report.failed,
                    "cutoff": report.cutoff.isoformat() if report.cutoff else "",
                    "max_age_days": self.settings.analysis_max_age_days,
                },
            )
        )
