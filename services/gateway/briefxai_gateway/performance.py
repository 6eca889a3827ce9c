"""Performance analytics: the report ``GetPerformanceReport`` answers, computed from the gateway's
recorded history by the rules below. Plain functions over hand-made or stored history; no gRPC and no
store here (``sampler.py`` records the history and reads it back).

The history, kept in the store for ``performance.retention_hours``:

- **samples**, one per ``performance.sample_seconds`` and gateway process (``instance``): the process's
  resident memory (RSS) and, per RPC method of the public service, the cumulative bucket counts, count
  and sum of the gateway's own server-side duration histogram (``grpc_server_handling_seconds``);
- **analysis runs**, one per run that ended SUCCEEDED: its conversations, its run time (from RUNNING to
  SUCCEEDED), the embedding token budget it used and, per stage, the conversations the stage finished in
  that run and its wall seconds (from the stage's start to its last finished item).

How the report reads it, over a window ``[start, end]`` (default the last 24 hours, at most the
retention period):

- **Throughput per stage**: Σ conversations / Σ wall seconds of the stage over the runs that finished
  in the window. Facets and embedding run side by side on each batch (a batch's slot is freed when both
  are done), so their wall times overlap and the faster of the two is paced by the slower.
- **Trend**: the window's runs are split in two at the middle of the span of their finish times; the
  earlier and the later half each get a throughput, and ``trend = later / earlier - 1`` (unset when a
  half has no run: a single run, or all finishing at one instant). Analyses of very different sizes in
  the two halves move it too (fixed costs weigh more on small analyses).
- **Share and bottleneck**: a stage's share is Σ its wall seconds / Σ run seconds; the bottleneck is the
  stage with the largest share (the earlier stage on a tie). Shares need not add up to 1: facets and
  embedding overlap, and reading options and the model's limits at the start belongs to no stage.
- **RPC latency**: per method, the histogram's increase over the window, per process as Prometheus's
  ``increase()`` does it (from the process's last sample before the window, or from its first sample
  in it when it has none: a process takes one when it starts, so little is lost; to its last sample
  in the window; a count that went down restarts from zero), summed over processes (a process with other bucket bounds than the first one is left out). Percentiles are
  **bucket-interpolated** like ``histogram_quantile``: linear inside the bucket that holds the rank, the
  bucket starting at the previous bound (0 for the first); a rank in the ``+Inf`` bucket gives the
  highest finite bound. Streaming RPCs (WatchAnalysis, UploadAnalysis) last as long as their stream.
- **Memory**: per process, its RSS samples in the window; the slope is a least-squares fit in MB per
  hour. It is **growing** (sustained growth, with a warning) when there are at least
  ``MEMORY_MIN_SAMPLES`` samples over at least ``MEMORY_MIN_SPAN_SECONDS``, the slope is positive, and
  the median of the last third of the samples exceeds the median of the first third by at least
  ``max(MEMORY_GROWTH_MIN_MB, MEMORY_GROWTH_MIN_FRACTION x that first median)``. Medians of thirds
  make one busy moment (an analysis holding its batches) not count as growth.

Recommendations, each a sentence that quotes the figure that triggered it (``recommendations``):

1. The bottleneck stage gets its remedy: **embed** → more embedding replicas (and more embedding
   calls in flight); and when the window's runs embedded more than ``SHORT_EMBED_TOKENS`` tokens per
   conversation, ``--embed-tokens 32`` (265 against 160 conversations/s at 64 on real chats, AMI 0.339
   against 0.390: docs/quality.md). **facets** → more concurrency (the LLM provider's and the gateway's
   calls in flight) or heuristic workers. **cluster** → clustering threads, a smaller map sample or fewer
   levels. **store** → PostgreSQL or a faster disk.
2. A stage whose throughput fell by ``THROUGHPUT_DROP`` or more from the earlier to the later half.
3. A process whose memory is growing.
4. A unary RPC with at least ``SLOW_RPC_MIN_CALLS`` calls whose p99 is ``SLOW_RPC_P99_SECONDS`` or more.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from briefxai_common.errors import InvalidArgument

from .models import Stage

DEFAULT_WINDOW_SECONDS = 24 * 3600.0
TIMED_STAGES: tuple[Stage, ...] = (Stage.FACETS, Stage.EMBED, Stage.CLUSTER, Stage.STORE)
QUANTILES = (0.5, 0.95, 0.99)
MB = 1024 * 1024

MEMORY_MIN_SAMPLES = 6
MEMORY_MIN_SPAN_SECONDS = 30 * 60.0
MEMORY_GROWTH_MIN_MB = 64.0
MEMORY_GROWTH_MIN_FRACTION = 0.10
THROUGHPUT_DROP = 0.25
SLOW_RPC_MIN_CALLS = 20
SLOW_RPC_P99_SECONDS = 1.0
SHORT_EMBED_TOKENS = 32


# -- history ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RpcHistogram:
    """One method's cumulative duration histogram at one moment: ``counts[i]`` observations took at
    most ``bounds[i]`` seconds (the last bound is ``inf``)."""

    grpc_type: str
    bounds: tuple[float, ...]
    counts: tuple[float, ...]
    count: float
    sum: float

    def minus(self, earlier: RpcHistogram | None) -> RpcHistogram:
        """The increase since ``earlier``; all of this one when there is none, or after a reset."""
        if earlier is None or earlier.bounds != self.bounds or self.count < earlier.count:
            return self
        return RpcHistogram(
            self.grpc_type,
            self.bounds,
            tuple(now - then for now, then in zip(self.counts, earlier.counts, strict=True)),
            self.count - earlier.count,
            self.sum - earlier.sum,
        )

    def plus(self, other: RpcHistogram) -> RpcHistogram:
        return RpcHistogram(
            self.grpc_type,
            self.bounds,
            tuple(a + b for a, b in zip(self.counts, other.counts, strict=True)),
            self.count + other.count,
            self.sum + other.sum,
        )


@dataclass(frozen=True, slots=True)
class Sample:
    """One gateway process at one moment: its RSS and its RPC duration histograms by method."""

    time: datetime
    instance: str
    rss_bytes: int
    rpcs: Mapping[str, RpcHistogram] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StageTiming:
    conversations: int
    seconds: float


@dataclass(frozen=True, slots=True)
class AnalysisRun:
    """One run of an analysis that ended SUCCEEDED (a resumed analysis: the last run only)."""

    finish_time: datetime
    conversations: int
    run_seconds: float
    embed_tokens: int
    stages: Mapping[Stage, StageTiming]


@dataclass(frozen=True, slots=True)
class Tuning:
    """The gateway settings the recommendations name with their current values."""

    embedding_max_concurrent_calls: int
    facets_max_concurrent_calls: int
    max_concurrent_analyses: int


# -- the report -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StageReport:
    stage: Stage
    conversations: int
    seconds: float
    per_second: float
    share: float
    earlier_per_second: float | None
    later_per_second: float | None

    @property
    def trend(self) -> float | None:
        """``later / earlier - 1``; None when either half has no run."""
        if self.earlier_per_second is None or self.later_per_second is None or self.earlier_per_second <= 0:
            return None
        return self.later_per_second / self.earlier_per_second - 1.0


@dataclass(frozen=True, slots=True)
class RpcReport:
    method: str
    grpc_type: str
    count: int
    mean_seconds: float
    p50_seconds: float
    p95_seconds: float
    p99_seconds: float


@dataclass(frozen=True, slots=True)
class MemoryReport:
    instance: str
    samples: int
    first_time: datetime
    last_time: datetime
    first_mb: float
    last_mb: float
    peak_mb: float
    slope_mb_per_hour: float
    growing: bool
    warning: str


@dataclass(frozen=True, slots=True)
class PerformanceReport:
    window_start: datetime
    window_end: datetime
    analyses: int
    conversations: int
    run_seconds: float
    per_second: float
    stages: list[StageReport]
    bottleneck: Stage | None
    rpcs: list[RpcReport]
    memory: list[MemoryReport]
    recommendations: list[str]
    samples: int


def resolve_window(seconds: float | None, retention_hours: float) -> float:
    """The window in seconds: unset or 0 = 24 hours; negative is refused; longer than the retention
    period is cut to it (nothing older is kept)."""
    if seconds is not None and seconds < 0:
        raise InvalidArgument("window", "must not be negative")
    window = seconds or DEFAULT_WINDOW_SECONDS
    return min(window, retention_hours * 3600.0)


def build_report(
    samples: Sequence[Sample],
    runs: Sequence[AnalysisRun],
    start: datetime,
    end: datetime,
    tuning: Tuning,
) -> PerformanceReport:
    """The report over ``[start, end]``. ``samples`` may include samples before ``start`` (the
    baselines of the RPC increases); samples after ``end`` and runs outside the window are ignored."""
    samples = sorted((s for s in samples if s.time <= end), key=lambda s: (s.time, s.instance))
    runs = [r for r in runs if start <= r.finish_time <= end]
    run_seconds = sum(r.run_seconds for r in runs)
    conversations = sum(r.conversations for r in runs)
    stages = stage_reports(runs)
    bottleneck = max(stages, key=lambda s: s.share).stage if stages and run_seconds > 0 else None
    rpcs = rpc_reports(samples, start)
    in_window = [s for s in samples if s.time >= start]
    memory = memory_reports(in_window)
    report = PerformanceReport(
        window_start=start,
        window_end=end,
        analyses=len(runs),
        conversations=conversations,
        run_seconds=run_seconds,
        per_second=conversations / run_seconds if run_seconds > 0 else 0.0,
        stages=stages,
        bottleneck=bottleneck,
        rpcs=rpcs,
        memory=memory,
        recommendations=[],
        samples=len(in_window),
    )
    report.recommendations.extend(recommendations(report, runs, tuning))
    return report


# -- stages -----------------------------------------------------------------------------------------


def _throughput(runs: Iterable[AnalysisRun], stage: Stage) -> tuple[int, float]:
    conversations, seconds = 0, 0.0
    for run in runs:
        timing = run.stages.get(stage)
        if timing is not None and timing.conversations > 0:
            conversations += timing.conversations
            seconds += timing.seconds
    return conversations, seconds


def _rate(conversations: int, seconds: float) -> float | None:
    return conversations / seconds if conversations > 0 and seconds > 0 else None


def split_halves(runs: Sequence[AnalysisRun]) -> tuple[list[AnalysisRun], list[AnalysisRun]]:
    """The runs that finished before the middle of the span of finish times, and the others."""
    if not runs:
        return [], []
    first = min(r.finish_time for r in runs)
    last = max(r.finish_time for r in runs)
    middle = first + (last - first) / 2
    if first == last:
        return list(runs), []
    return [r for r in runs if r.finish_time < middle], [r for r in runs if r.finish_time >= middle]


def stage_reports(runs: Sequence[AnalysisRun]) -> list[StageReport]:
    """Throughput, share and halves per stage, in pipeline order; stages no run timed are left out."""
    total = sum(r.run_seconds for r in runs)
    earlier, later = split_halves(runs)
    reports = []
    for stage in TIMED_STAGES:
        conversations, seconds = _throughput(runs, stage)
        if conversations == 0:
            continue
        reports.append(
            StageReport(
                stage=stage,
                conversations=conversations,
                seconds=seconds,
                per_second=_rate(conversations, seconds) or 0.0,
                share=seconds / total if total > 0 else 0.0,
                earlier_per_second=_rate(*_throughput(earlier, stage)),
                later_per_second=_rate(*_throughput(later, stage)),
            )
        )
    return reports


# -- RPC latency ------------------------------------------------------------------------------------


def bucket_quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float:
    """The ``q`` quantile of a cumulative histogram, interpolated linearly inside its bucket (as
    Prometheus's ``histogram_quantile``); NaN without observations."""
    if not counts or counts[-1] <= 0:
        return math.nan
    rank = q * counts[-1]
    for index, (bound, cumulative) in enumerate(zip(bounds, counts, strict=True)):
        if cumulative < rank:
            continue
        if math.isinf(bound):
            finite = [b for b in bounds if not math.isinf(b)]
            return finite[-1] if finite else math.nan
        lower = bounds[index - 1] if index > 0 else 0.0
        below = counts[index - 1] if index > 0 else 0.0
        inside = cumulative - below
        if inside <= 0:
            return bound
        return lower + (bound - lower) * (rank - below) / inside
    return math.nan


def rpc_increase(samples: Sequence[Sample], start: datetime) -> dict[str, RpcHistogram]:
    """Per method, the histogram's increase over the window, summed over processes. ``samples`` are
    sorted by time; those before ``start`` only serve as baselines, and a process without one starts
    from its first sample in the window."""
    by_instance: dict[str, list[Sample]] = {}
    for sample in samples:
        by_instance.setdefault(sample.instance, []).append(sample)
    totals: dict[str, RpcHistogram] = {}
    for history in by_instance.values():
        before = [s for s in history if s.time < start]
        inside = [s for s in history if s.time >= start]
        if not before:
            if not inside:
                continue
            before, inside = inside[:1], inside[1:]
        previous: Mapping[str, RpcHistogram] = before[-1].rpcs
        for sample in inside:
            for method, histogram in sample.rpcs.items():
                step = histogram.minus(previous.get(method))
                if step.count <= 0:
                    continue
                total = totals.get(method)
                if total is None:
                    totals[method] = step
                elif total.bounds == step.bounds:
                    totals[method] = total.plus(step)
            previous = sample.rpcs
    return totals


def rpc_reports(samples: Sequence[Sample], start: datetime) -> list[RpcReport]:
    reports = []
    for method, histogram in sorted(rpc_increase(samples, start).items()):
        p50, p95, p99 = (bucket_quantile(q, histogram.bounds, histogram.counts) for q in QUANTILES)
        reports.append(
            RpcReport(
                method=method,
                grpc_type=histogram.grpc_type,
                count=round(histogram.count),
                mean_seconds=histogram.sum / histogram.count,
                p50_seconds=p50,
                p95_seconds=p95,
                p99_seconds=p99,
            )
        )
    return reports


# -- memory -----------------------------------------------------------------------------------------


def slope_per_hour(points: Sequence[tuple[datetime, float]]) -> float:
    """Least-squares slope of ``(time, value)`` points, per hour; 0 with fewer than two instants."""
    if len(points) < 2:
        return 0.0
    origin = points[0][0]
    xs = [(t - origin).total_seconds() / 3600.0 for t, _ in points]
    ys = [v for _, v in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread <= 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def memory_growth(points: Sequence[tuple[datetime, float]]) -> tuple[float, bool]:
    """The slope (MB/hour) and whether the memory grows in a sustained way (rule in the module doc)."""
    slope = slope_per_hour(points)
    if len(points) < MEMORY_MIN_SAMPLES:
        return slope, False
    if (points[-1][0] - points[0][0]).total_seconds() < MEMORY_MIN_SPAN_SECONDS or slope <= 0:
        return slope, False
    third = len(points) // 3
    first = statistics.median(v for _, v in points[:third])
    last = statistics.median(v for _, v in points[-third:])
    return slope, last - first >= max(MEMORY_GROWTH_MIN_MB, MEMORY_GROWTH_MIN_FRACTION * first)


def memory_reports(samples: Sequence[Sample]) -> list[MemoryReport]:
    """One entry per process seen in ``samples`` (sorted by time), the most recent process first."""
    by_instance: dict[str, list[Sample]] = {}
    for sample in samples:
        by_instance.setdefault(sample.instance, []).append(sample)
    reports = []
    for instance, history in by_instance.items():
        points = [(s.time, s.rss_bytes / MB) for s in history]
        slope, growing = memory_growth(points)
        first_mb, last_mb = points[0][1], points[-1][1]
        hours = (points[-1][0] - points[0][0]).total_seconds() / 3600.0
        warning = ""
        if growing:
            warning = (
                f"memory grew from {first_mb:,.0f} MB to {last_mb:,.0f} MB "
                f"({slope:+,.0f} MB/h over {hours:.1f} h)"
            )
        reports.append(
            MemoryReport(
                instance=instance,
                samples=len(points),
                first_time=points[0][0],
                last_time=points[-1][0],
                first_mb=first_mb,
                last_mb=last_mb,
                peak_mb=max(v for _, v in points),
                slope_mb_per_hour=slope,
                growing=growing,
                warning=warning,
            )
        )
    reports.sort(key=lambda r: r.last_time, reverse=True)
    return reports


# -- recommendations --------------------------------------------------------------------------------

_SERVICE_OF = {
    Stage.FACETS: "the facets service",
    Stage.EMBED: "the embedding service",
    Stage.CLUSTER: "the clustering service",
    Stage.STORE: "the store",
}


def _bottleneck_advice(stage: StageReport, runs: Sequence[AnalysisRun], tuning: Tuning) -> list[str]:
    figure = (
        f"{stage.stage.value} is the bottleneck ({stage.share:.0%} of the analyses' run time, "
        f"{stage.per_second:,.1f} conversations/s)"
    )
    if stage.stage is Stage.EMBED:
        advice = [
            f"{figure}: add embedding replicas (gateway.embedding_address as dns:///host:port over them) "
            f"and raise gateway.embedding_max_concurrent_calls (now {tuning.embedding_max_concurrent_calls}) "
            "to keep them busy"
        ]
        timed = [r.embed_tokens for r in runs if Stage.EMBED in r.stages and r.embed_tokens > 0]
        tokens = statistics.fmean(timed) if timed else 0.0
        if tokens > SHORT_EMBED_TOKENS:
            advice.append(
                f"{figure}: embed fewer tokens per conversation, --embed-tokens {SHORT_EMBED_TOKENS} "
                f"(the window's analyses used {tokens:.0f}): on real chats 32 tokens ran at 265 "
                "conversations/s against 160 at 64, AMI 0.339 against 0.390 (docs/quality.md)"
            )
        return advice
    if stage.stage is Stage.FACETS:
        return [
            f"{figure}: with an LLM provider raise facets.openai.concurrency and "
            f"gateway.facets_max_concurrent_calls (now {tuning.facets_max_concurrent_calls}); with the "
            "heuristic provider raise facets.heuristic.workers or add facets replicas"
        ]
    if stage.stage is Stage.CLUSTER:
        return [
            f"{figure}: raise clustering.compute_threads; on large sets lower clustering.umap_sample_size "
            "(the 2-D map) or ask for fewer hierarchy levels (--depth)"
        ]
    return [
        f"{figure}: the results are written in one transaction; put the store on a faster disk or use "
        "PostgreSQL (gateway.store_url)"
    ]


def recommendations(report: PerformanceReport, runs: Sequence[AnalysisRun], tuning: Tuning) -> list[str]:
    """The rules of the module doc, in that order."""
    advice: list[str] = []
    by_stage = {s.stage: s for s in report.stages}
    if report.bottleneck is not None:
        advice.extend(_bottleneck_advice(by_stage[report.bottleneck], runs, tuning))
    for stage in report.stages:
        trend = stage.trend
        if trend is not None and trend <= -THROUGHPUT_DROP:
            advice.append(
                f"{stage.stage.value} throughput fell {-trend:.0%} from the earlier to the later half of the "
                f"window ({stage.earlier_per_second:,.1f} → {stage.later_per_second:,.1f} conversations/s): "
                f"check the load on {_SERVICE_OF[stage.stage]} (or whether the later analyses were smaller)"
            )
    for memory in report.memory:
        if memory.growing:
            advice.append(
                f"gateway {memory.instance}: {memory.warning}: look for analyses left running (briefxai "
                f"list), lower gateway.max_concurrent_analyses (now {tuning.max_concurrent_analyses}) or "
                "batch_size × max_inflight_batches, and restart the gateway if it keeps growing"
            )
    for rpc in report.rpcs:
        if (
            rpc.grpc_type != "unary"
            or rpc.count < SLOW_RPC_MIN_CALLS
            or not rpc.p99_seconds >= SLOW_RPC_P99_SECONDS
        ):
            continue
        if rpc.method == "CreateAnalysis":
            hint = (
                "large inline sets are checked and stored before it answers; upload them with "
                "UploadAnalysis (briefxai analyze --stream)"
            )
        else:
            hint = (
                "it reads the store: check the store's latency (briefxai_operation_duration_seconds"
                '{operation=~"store_.*"}) or use PostgreSQL'
            )
        advice.append(f"{rpc.method} p99 is {rpc.p99_seconds:.2f} s over {rpc.count} calls: {hint}")
    return advice
