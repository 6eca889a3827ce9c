"""The gateway's performance history: a background sampler, the record of each finished analysis run,
retention, and the report over a window (rules in ``performance.py``).

- Every ``performance.sample_seconds`` (and once at start) the sampler stores one sample of this process:
  its RSS and the cumulative buckets of its server-side RPC duration histogram
  (``grpc_server_handling_seconds``, the public service's methods only) read from the Prometheus
  registry. Samples older than ``performance.retention_hours`` are deleted at each sample.
- When a run of an analysis ends SUCCEEDED, the progress hub hands over its live progress; the
  per-stage wall times it measured are stored as one analysis run (without the analysis id, so
  deleting an analysis leaves the anonymous timing history as it is).
- ``report(window)`` reads the window's history (plus each process's last sample before it, the
  baseline of the RPC increases) and a fresh, unstored sample of this process, so that it is current.

Store calls and the registry read run in a worker thread (``in_thread``).
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import psutil
from prometheus_client import REGISTRY, CollectorRegistry

from briefxai_common.logging import get_logger

from .concurrency import in_thread
from .models import Stage
from .performance import (
    TIMED_STAGES,
    AnalysisRun,
    PerformanceReport,
    RpcHistogram,
    Sample,
    Tuning,
    build_report,
    resolve_window,
)
from .progress import LiveProgress
from .settings import GatewaySettings
from .store import Store

log = get_logger(__name__)

RPC_HISTOGRAM = "grpc_server_handling_seconds"


@dataclass
class _Collected:
    grpc_type: str
    buckets: list[tuple[float, float]] = field(default_factory=list)
    count: float = 0.0
    sum: float = 0.0


def read_rpc_histograms(registry: CollectorRegistry, grpc_service: str) -> dict[str, RpcHistogram]:
    """The server-side duration histogram of each method of ``grpc_service`` that has been called."""
    found: dict[str, _Collected] = {}
    for metric in registry.collect():
        if metric.name != RPC_HISTOGRAM:
            continue
        for sample in metric.samples:
            labels = sample.labels
            if labels.get("grpc_service") != grpc_service:
                continue
            entry = found.setdefault(labels["grpc_method"], _Collected(labels.get("grpc_type", "")))
            if sample.name.endswith("_bucket"):
                entry.buckets.append((float(labels["le"]), sample.value))
            elif sample.name.endswith("_count"):
                entry.count = sample.value
            elif sample.name.endswith("_sum"):
                entry.sum = sample.value
    return {
        method: RpcHistogram(
            grpc_type=entry.grpc_type,
            bounds=tuple(bound for bound, _ in sorted(entry.buckets)),
            counts=tuple(count for _, count in sorted(entry.buckets)),
            count=entry.count,
            sum=entry.sum,
        )
        for method, entry in found.items()
        if entry.count > 0 and entry.buckets
    }


def run_from_progress(live: LiveProgress, finish_time: datetime, embed_tokens: int) -> AnalysisRun | None:
    """The run ``live`` measured, or None when it did not succeed (its store stage never finished)."""
    times = live.stage_times()
    if Stage.STORE not in times:
        return None
    return AnalysisRun(
        finish_time=finish_time,
        conversations=live.total,
        run_seconds=live.run_seconds(),
        embed_tokens=embed_tokens,
        stages={stage: times[stage] for stage in TIMED_STAGES if stage in times},
    )


class PerformanceSampler:
    """Samples this gateway process, records finished runs, and answers the performance report."""

    def __init__(
        self,
        settings: GatewaySettings,
        store: Store,
        grpc_service: str,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.settings = settings
        self.store = store
        self.grpc_service = grpc_service
        self.registry = registry
        self.instance = f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._process = psutil.Process()
        self._loop: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def tuning(self) -> Tuning:
        return Tuning(
            embedding_max_concurrent_calls=self.settings.embedding_max_concurrent_calls,
            facets_max_concurrent_calls=self.settings.facets_max_concurrent_calls,
            max_concurrent_analyses=self.settings.max_concurrent_analyses,
        )

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Takes the first sample (the baseline of this process's RPC counts) and starts the loop."""
        await self._sample_logged()
        self._loop = asyncio.create_task(self._run(), name="performance-sampler")

    async def stop(self) -> None:
        """Stops the loop and waits for the runs still being recorded."""
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.wait({self._loop})
            self._loop = None
        if self._pending:
            await asyncio.wait(set(self._pending))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.performance.sample_seconds)
            await self._sample_logged()

    async def _sample_logged(self) -> None:
        try:
            await self.sample_now()
        except Exception:
            log.exception("performance_sample_failed")

    # -- samples ---------------------------------------------------------------------------------

    def snapshot(self) -> Sample:
        """This process now (blocking: reads the registry)."""
        return Sample(
            time=datetime.now(UTC),
            instance=self.instance,
            rss_bytes=int(self._process.memory_info().rss),
            rpcs=read_rpc_histograms(self.registry, self.grpc_service),
        )

    def _sample_and_prune(self) -> Sample:
        sample = self.snapshot()
        self.store.save_performance_sample(sample)
        cutoff = sample.time - timedelta(hours=self.settings.performance.retention_hours)
        self.store.prune_performance(cutoff)
        return sample

    async def sample_now(self) -> Sample:
        """Takes and stores one sample now and deletes history past the retention period."""
        return await in_thread(self._sample_and_prune)

    # -- analysis runs -----------------------------------------------------------------------------

    def analysis_finished(self, live: LiveProgress) -> None:
        """Progress hub listener: records the run when it succeeded (stored by a task of its own)."""
        run = run_from_progress(live, datetime.now(UTC), embed_tokens=0)
        if run is None:
            return
        task = asyncio.get_running_loop().create_task(
            self._record(live.analysis_id, run), name=f"performance-run-{live.analysis_id}"
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _record(self, analysis_id: str, run: AnalysisRun) -> None:
        """Stores ``run`` with the embedding token budget its analysis used."""
        try:
            analysis = await in_thread(self.store.get_analysis, analysis_id)
            tokens = analysis.options.embed_token_budget if analysis is not None else 0
            run = replace(run, embed_tokens=tokens or self.settings.defaults.embed_token_budget)
            await in_thread(self.store.record_analysis_run, self.instance, run)
        except Exception:
            log.exception("performance_run_not_recorded", analysis_id=analysis_id)

    # -- the report --------------------------------------------------------------------------------

    def _report(self, window_seconds: float) -> PerformanceReport:
        current = self.snapshot()
        end = current.time
        start = end - timedelta(seconds=window_seconds)
        samples, runs = self.store.performance_history(start, end)
        return build_report([*samples, current], runs, start, end, self.tuning)

    async def report(self, window_seconds: float | None = None) -> PerformanceReport:
        """The report over the last ``window_seconds`` (unset or 0: 24 hours; cut to the retention)."""
        window = resolve_window(window_seconds, self.settings.performance.retention_hours)
        return await in_thread(self._report, window)
