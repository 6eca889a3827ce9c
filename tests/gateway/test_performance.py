"""Performance analytics on hand-made history: bucket percentiles, increases, throughput and trend,
bottleneck, memory growth, recommendations (briefxai_gateway.performance); the stage clocks of the
live progress; the history in the store with its retention (briefxai_gateway.store)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram

from briefxai_common.errors import InvalidArgument
from briefxai_gateway.models import Stage
from briefxai_gateway.performance import (
    DEFAULT_WINDOW_SECONDS,
    AnalysisRun,
    PerformanceReport,
    RpcHistogram,
    Sample,
    StageTiming,
    Tuning,
    bucket_quantile,
    build_report,
    memory_growth,
    resolve_window,
    rpc_increase,
    split_halves,
)
from briefxai_gateway.progress import LiveProgress, ProgressHub
from briefxai_gateway.sampler import read_rpc_histograms, run_from_progress
from briefxai_gateway.store import Store

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TUNING = Tuning(embedding_max_concurrent_calls=2, facets_max_concurrent_calls=2, max_concurrent_analyses=2)
BOUNDS = (0.1, 0.5, 1.0, math.inf)
MB = 1024 * 1024


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def histogram(counts: tuple[float, ...], total: float = 0.0, grpc_type: str = "unary") -> RpcHistogram:
    return RpcHistogram(grpc_type, BOUNDS, counts, counts[-1], total)


def pipeline(facets: float, embed: float, cluster: float, store: float) -> dict[Stage, float]:
    """Wall seconds of the four timed stages."""
    return {Stage.FACETS: facets, Stage.EMBED: embed, Stage.CLUSTER: cluster, Stage.STORE: store}


def run(
    minutes: float,
    conversations: int,
    seconds: dict[Stage, float],
    *,
    run_seconds: float | None = None,
    tokens: int = 64,
) -> AnalysisRun:
    return AnalysisRun(
        finish_time=at(minutes),
        conversations=conversations,
        run_seconds=run_seconds if run_seconds is not None else sum(seconds.values()) + 1.0,
        embed_tokens=tokens,
        stages={stage: StageTiming(conversations, s) for stage, s in seconds.items()},
    )


def report_of(
    samples: list[Sample], runs: list[AnalysisRun], start: float = 0, end: float = 600
) -> tuple[list[str], PerformanceReport]:
    report = build_report(samples, runs, at(start), at(end), TUNING)
    return report.recommendations, report


# -- percentiles and increases ----------------------------------------------------------------------


def test_bucket_percentiles_interpolate_inside_the_bucket() -> None:
    # 100 calls: 50 took at most 0.1 s, 45 more at most 0.5 s, the last 5 at most 1 s.
    counts = (50.0, 95.0, 100.0, 100.0)
    assert bucket_quantile(0.5, BOUNDS, counts) == pytest.approx(0.1)
    assert bucket_quantile(0.25, BOUNDS, counts) == pytest.approx(0.05)  # from 0 inside the first bucket
    assert bucket_quantile(0.95, BOUNDS, counts) == pytest.approx(0.5)
    assert bucket_quantile(0.99, BOUNDS, counts) == pytest.approx(0.5 + 0.5 * 4 / 5)
    # A rank in the +Inf bucket gives the highest finite bound; no observations give NaN.
    assert bucket_quantile(0.99, BOUNDS, (0.0, 0.0, 10.0, 20.0)) == 1.0
    assert math.isnan(bucket_quantile(0.5, BOUNDS, (0.0, 0.0, 0.0, 0.0)))


def test_rpc_increase_from_the_baseline_with_resets_and_several_processes() -> None:
    before = Sample(at(-5), "a", MB, {"GetAnalysis": histogram((10, 10, 10, 10), 0.5)})
    inside = [
        Sample(at(1), "a", MB, {"GetAnalysis": histogram((14, 18, 20, 20), 3.0)}),
        # Process "a" restarted its counters (same instance name): the new counts are all new.
        Sample(at(2), "a", MB, {"GetAnalysis": histogram((2, 2, 2, 2), 0.1)}),
        # Process "b" started inside the window: its first sample is its baseline.
        Sample(at(3), "b", MB, {"GetAnalysis": histogram((1, 1, 1, 1), 0.05)}),
        Sample(
            at(4),
            "b",
            MB,
            {"GetAnalysis": histogram((2, 2, 2, 2), 0.1), "CreateAnalysis": histogram((0, 0, 3, 3), 2.0)},
        ),
    ]
    totals = rpc_increase([before, *inside], at(0))
    get = totals["GetAnalysis"]
    assert get.counts == (4 + 2 + 1, 8 + 2 + 1, 10 + 2 + 1, 10 + 2 + 1)
    assert get.count == 13 and get.sum == pytest.approx(2.5 + 0.1 + 0.05)
    assert totals["CreateAnalysis"].count == 3
    # A process with a single sample and no baseline has no increase to show.
    assert rpc_increase([inside[2]], at(0)) == {}
    # Only the baseline before the window: nothing happened in it.
    assert rpc_increase([before], at(0)) == {}


def test_rpc_histograms_are_read_from_a_prometheus_registry() -> None:
    registry = CollectorRegistry()
    seconds = Histogram(
        "grpc_server_handling_seconds",
        "latency",
        ["grpc_type", "grpc_service", "grpc_method"],
        registry=registry,
        buckets=(0.1, 0.5, 1.0),
    )
    for value in (0.05, 0.2, 0.7):
        seconds.labels("unary", "briefxai.gateway.v1.AnalysisService", "GetAnalysis").observe(value)
    seconds.labels("unary", "grpc.health.v1.Health", "Check").observe(0.01)
    read = read_rpc_histograms(registry, "briefxai.gateway.v1.AnalysisService")
    assert set(read) == {"GetAnalysis"}
    got = read["GetAnalysis"]
    assert (got.grpc_type, got.bounds, got.counts, got.count) == ("unary", BOUNDS, (1.0, 2.0, 3.0, 3.0), 3.0)
    assert got.sum == pytest.approx(0.95)


# -- stages, trend, bottleneck ----------------------------------------------------------------------


def test_throughput_share_trend_and_bottleneck() -> None:
    runs = [
        run(10, 100, pipeline(1.0, 2.0, 0.5, 0.5), run_seconds=4),
        run(20, 300, pipeline(2.0, 3.0, 1.0, 0.5), run_seconds=6),
        run(100, 200, pipeline(1.0, 4.0, 0.5, 0.5), run_seconds=6),
    ]
    _, report = report_of([], runs)
    assert report.analyses == 3 and report.conversations == 600
    assert report.per_second == pytest.approx(600 / 16)
    stages = {s.stage: s for s in report.stages}
    assert list(stages) == [Stage.FACETS, Stage.EMBED, Stage.CLUSTER, Stage.STORE]
    embed = stages[Stage.EMBED]
    assert embed.seconds == pytest.approx(9.0) and embed.per_second == pytest.approx(600 / 9)
    assert embed.share == pytest.approx(9 / 16)
    # Split at the middle of 10..100 minutes: the first two runs against the last.
    assert embed.earlier_per_second == pytest.approx(400 / 5)
    assert embed.later_per_second == pytest.approx(200 / 4)
    assert embed.trend == pytest.approx(50 / 80 - 1)
    assert report.bottleneck is Stage.EMBED


def test_a_single_run_has_no_trend_and_outside_runs_do_not_count() -> None:
    runs = [run(10, 50, {Stage.FACETS: 3.0, Stage.EMBED: 1.0}), run(-10, 999, {Stage.EMBED: 1.0})]
    _, report = report_of([], runs)
    assert report.analyses == 1
    assert all(s.trend is None for s in report.stages)
    assert report.bottleneck is Stage.FACETS
    assert split_halves([]) == ([], [])


def test_no_history_gives_an_empty_report() -> None:
    advice, report = report_of([], [])
    assert (report.analyses, report.stages, report.bottleneck, report.rpcs, report.memory) == (
        0,
        [],
        None,
        [],
        [],
    )
    assert advice == []


# -- memory -----------------------------------------------------------------------------------------


def memory_samples(values_mb: list[float], every_minutes: float = 10, instance: str = "a") -> list[Sample]:
    return [Sample(at(i * every_minutes), instance, int(v * MB)) for i, v in enumerate(values_mb)]


def test_sustained_memory_growth_is_flagged() -> None:
    growing = memory_samples([200, 230, 260, 300, 340, 380, 420, 460, 500])
    slope, flagged = memory_growth([(s.time, s.rss_bytes / MB) for s in growing])
    assert flagged and slope > 0
    advice, report = report_of(growing, [])
    (memory,) = report.memory
    assert memory.growing and memory.samples == 9
    assert (memory.first_mb, memory.last_mb, memory.peak_mb) == (200, 500, 500)
    assert memory.slope_mb_per_hour == pytest.approx(slope)
    assert memory.warning.startswith("memory grew from 200 MB to 500 MB")
    assert any("gateway a: memory grew from 200 MB to 500 MB" in line for line in advice)


@pytest.mark.parametrize(
    "values, every",
    [
        ([200, 600, 210, 205, 650, 200, 210, 202, 208], 10),  # spikes while analyses ran, no growth
        ([200, 210, 220, 230, 240, 250, 260, 270, 280], 10),  # grows, but by less than 64 MB
        ([200, 300, 400, 500, 600], 10),  # too few samples
        ([200, 300, 400, 500, 600, 700, 800], 1),  # over less than 30 minutes
    ],
)
def test_noise_small_growth_and_short_histories_are_not_flagged(values: list[float], every: float) -> None:
    _, report = report_of(memory_samples(values, every), [])
    assert not report.memory[0].growing and report.memory[0].warning == ""


def test_memory_is_reported_per_process_most_recent_first() -> None:
    samples = [*memory_samples([100, 110], instance="old"), Sample(at(60), "new", 300 * MB)]
    samples.append(Sample(at(70), "new", 310 * MB))
    _, report = report_of(samples, [])
    assert [m.instance for m in report.memory] == ["new", "old"]
    assert report.samples == 4


# -- recommendations --------------------------------------------------------------------------------


def test_embed_bottleneck_recommends_replicas_and_fewer_tokens() -> None:
    runs = [run(10, 400, pipeline(0.5, 2.5, 0.4, 0.2), run_seconds=4)]
    advice, _ = report_of([], runs)
    assert len(advice) == 2
    assert advice[0].startswith(
        "embed is the bottleneck (62% of the analyses' run time, 160.0 conversations/s)"
    )
    assert "embedding replicas" in advice[0] and "embedding_max_concurrent_calls (now 2)" in advice[0]
    assert "--embed-tokens 32" in advice[1] and "used 64" in advice[1] and "AMI 0.339" in advice[1]
    # Analyses that already embed 32 tokens are not told to.
    runs = [run(10, 400, {Stage.EMBED: 2.5, Stage.STORE: 0.2}, run_seconds=4, tokens=32)]
    advice, _ = report_of([], runs)
    assert len(advice) == 1 and "--embed-tokens" not in advice[0]


@pytest.mark.parametrize(
    "stage, expected",
    [
        (Stage.FACETS, "facets.openai.concurrency"),
        (Stage.CLUSTER, "clustering.compute_threads"),
        (Stage.STORE, "PostgreSQL"),
    ],
)
def test_each_bottleneck_has_its_remedy(stage: Stage, expected: str) -> None:
    seconds = {**pipeline(0.2, 0.2, 0.2, 0.2), stage: 3.0}
    advice, report = report_of([], [run(10, 100, seconds, run_seconds=4)])
    assert report.bottleneck is stage
    assert advice[0].startswith(f"{stage.value} is the bottleneck (75% ") and expected in advice[0]


def test_falling_throughput_and_slow_rpcs_are_reported() -> None:
    runs = [
        run(10, 100, {Stage.EMBED: 1.0}, run_seconds=2),
        run(100, 100, {Stage.EMBED: 2.0}, run_seconds=3),
    ]
    # 40 GetAnalysis calls, 2 of them over 1 s: p99 in the +Inf bucket -> 1 s; 40 slow streams.
    slow = histogram((30, 36, 38, 40), 20.0)
    streams = histogram((0, 0, 0, 40), 400.0, "server_stream")
    samples = [
        Sample(at(1), "a", MB),
        Sample(at(5), "a", MB, {"GetAnalysis": slow, "WatchAnalysis": streams}),
    ]
    advice, report = report_of(samples, runs)
    assert any(
        line.startswith(
            "embed throughput fell 50% from the earlier to the later half of the window (100.0 → 50.0"
        )
        for line in advice
    )
    assert any(line.startswith("GetAnalysis p99 is 1.00 s over 40 calls") for line in advice)
    assert not any(line.startswith("WatchAnalysis") for line in advice)
    latency = {r.method: r for r in report.rpcs}
    assert latency["GetAnalysis"].mean_seconds == pytest.approx(0.5)
    assert latency["WatchAnalysis"].grpc_type == "server_stream"


def test_window_defaults_to_a_day_and_is_cut_to_the_retention() -> None:
    assert resolve_window(None, 168) == resolve_window(0, 168) == DEFAULT_WINDOW_SECONDS
    assert resolve_window(3600, 168) == 3600
    assert resolve_window(30 * 86400, 168) == 168 * 3600
    with pytest.raises(InvalidArgument):
        resolve_window(-1, 168)


# -- live progress ----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_live_progress_times_each_stage_from_its_start_to_its_last_item() -> None:
    clock = Clock()
    live = LiveProgress("a", 20, clock=clock)
    clock.now = 101.0
    live.begin(Stage.FACETS, already_done=10)  # resumed: half of the facets were done by an earlier run
    live.begin(Stage.EMBED)
    clock.now = 102.0
    live.advance(Stage.FACETS, 10)
    clock.now = 104.0
    live.advance(Stage.EMBED, 20)
    live.begin(Stage.CLUSTER)
    clock.now = 107.0
    live.advance(Stage.CLUSTER, 20)
    times = live.stage_times()
    assert times[Stage.FACETS].conversations == 10 and times[Stage.FACETS].seconds == pytest.approx(1.0)
    assert times[Stage.EMBED].conversations == 20 and times[Stage.EMBED].seconds == pytest.approx(3.0)
    assert times[Stage.CLUSTER].seconds == pytest.approx(3.0)
    # The store never finished: the run did not succeed and is not recorded.
    live.begin(Stage.STORE)
    assert run_from_progress(live, T0, 64) is None
    clock.now = 108.0
    live.advance(Stage.STORE, 20)
    recorded = run_from_progress(live, T0, 64)
    assert recorded is not None
    assert recorded.run_seconds == pytest.approx(8.0) and recorded.conversations == 20
    assert recorded.stages[Stage.STORE] == StageTiming(20, pytest.approx(1.0))  # type: ignore[arg-type]


def test_finish_listeners_get_the_run_and_their_errors_are_contained() -> None:
    hub = ProgressHub()
    seen: list[str] = []

    def broken(live: LiveProgress) -> None:
        raise RuntimeError("boom")

    hub.on_finish(broken)
    hub.on_finish(lambda live: seen.append(live.analysis_id))
    hub.start("a", 3)
    hub.finish("a")
    hub.finish("a")  # a second finish has no run to hand over
    assert seen == ["a"]


# -- the store --------------------------------------------------------------------------------------


def test_history_round_trips_with_baselines_and_retention(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/gateway.db")
    store.migrate()
    rpcs = {"GetAnalysis": histogram((1, 2, 3, 4), 1.5)}
    for minutes, instance in ((-30, "a"), (-20, "a"), (-25, "b"), (5, "a"), (10, "c")):
        store.save_performance_sample(Sample(at(minutes), instance, 100 * MB, rpcs))
    store.record_analysis_run("a", run(-5, 10, {Stage.EMBED: 1.0}))
    store.record_analysis_run("a", run(5, 20, {Stage.FACETS: 0.5, Stage.EMBED: 1.5}, tokens=32))
    samples, runs = store.performance_history(at(0), at(60))
    # In the window: a@5, c@10; baselines: the last sample of a (-20) and of b (-25) before it.
    assert [(s.instance, s.time) for s in samples] == [
        ("b", at(-25)),
        ("a", at(-20)),
        ("a", at(5)),
        ("c", at(10)),
    ]
    assert samples[-1].rpcs == rpcs and samples[-1].time.tzinfo is not None
    assert runs == [run(5, 20, {Stage.FACETS: 0.5, Stage.EMBED: 1.5}, tokens=32)]
    assert store.prune_performance(at(0)) == 4  # three samples and one run before the cut
    samples, runs = store.performance_history(at(-60), at(60))
    assert sorted(s.instance for s in samples) == ["a", "c"] and len(runs) == 1
    store.close()
