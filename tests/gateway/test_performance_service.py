"""GetPerformanceReport on a real gateway with its real downstreams, and ``briefxai perf`` against it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from briefxai.gateway.v1 import gateway_pb2
from briefxai_gateway.performance import AnalysisRun, Sample
from tests.e2e.support import run_cli
from tests.support.errors import field_violations

from .conftest import GatewayFactory, GatewayHandle, conversations

pytestmark = pytest.mark.asyncio(loop_scope="session")

TIMED = [
    gateway_pb2.STAGE_FACETS,
    gateway_pb2.STAGE_EMBED,
    gateway_pb2.STAGE_CLUSTER,
    gateway_pb2.STAGE_STORE,
]
# Long enough that the background loop never samples during a test: the tests take samples themselves.
NO_LOOP = {"sample_seconds": 3600}


async def analyse(gw: GatewayHandle, start: int, count: int = 24) -> None:
    request = gateway_pb2.CreateAnalysisRequest(
        conversations=conversations(count, start), options=gateway_pb2.AnalysisOptions(seed=3)
    )
    created = (await gw.stub.CreateAnalysis(request)).analysis
    final = (await gw.wait(created.id))[-1].analysis
    assert final.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, final.error.message


async def until(condition: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """Polls ``condition()`` (blocking, run in a thread) until it is true; fails after ``limit`` seconds."""
    for _ in range(round(limit / 0.05)):
        if await asyncio.to_thread(condition):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def history(gw: GatewayHandle) -> tuple[list[Sample], list[AnalysisRun]]:
    """Everything stored (blocking)."""
    now = datetime.now(UTC)
    return gw.store.performance_history(now - timedelta(days=30), now + timedelta(minutes=1))


async def test_report_over_two_analyses(start_gateway: GatewayFactory, tmp_path: Path) -> None:
    gw = await start_gateway(performance=NO_LOOP)
    await analyse(gw, 0)
    await analyse(gw, 100)
    # A run is recorded once its pipeline has ended, which may be just after the watch saw SUCCEEDED.
    await until(lambda: len(history(gw)[1]) == 2, "the two runs to be recorded")
    sampler = gw.gateway.sampler
    forced = await sampler.sample_now()
    assert forced.instance == sampler.instance and forced.rss_bytes > 0
    assert forced.rpcs["CreateAnalysis"].count >= 2  # cumulative: this process's whole life

    report = await gw.stub.GetPerformanceReport(gateway_pb2.GetPerformanceReportRequest())
    assert report.window_end_time.ToDatetime() - report.window_start_time.ToDatetime() == timedelta(hours=24)
    assert (report.analysis_count, report.conversation_count) == (2, 48)
    assert report.conversations_per_second > 0

    # Throughput per stage, consistent with its conversations and seconds; both halves and a trend.
    assert [s.stage for s in report.stages] == TIMED
    for stage in report.stages:
        assert stage.conversation_count == 48 and stage.seconds > 0
        assert stage.conversations_per_second == pytest.approx(48 / stage.seconds)
        assert 0 < stage.share <= 1
        assert stage.HasField("earlier_conversations_per_second")
        assert stage.HasField("later_conversations_per_second") and stage.HasField("trend")
        later, earlier = stage.later_conversations_per_second, stage.earlier_conversations_per_second
        assert stage.trend == pytest.approx(later / earlier - 1)
    # The bottleneck is the stage with the largest share, and the first recommendation names it.
    largest = max(report.stages, key=lambda s: s.share)
    assert report.bottleneck == largest.stage
    name = gateway_pb2.Stage.Name(report.bottleneck).removeprefix("STAGE_").lower()
    assert report.recommendations[0].startswith(f"{name} is the bottleneck ({largest.share:.0%}")

    # Latency per RPC since this gateway started (other gateways of this process came before it).
    latency = {r.method: r for r in report.rpc_latencies}
    assert latency["CreateAnalysis"].count == 2 and latency["CreateAnalysis"].grpc_type == "unary"
    assert latency["WatchAnalysis"].count == 2 and latency["WatchAnalysis"].grpc_type == "server_stream"
    for rpc in latency.values():
        assert 0 < rpc.p50_seconds <= rpc.p95_seconds <= rpc.p99_seconds
        assert rpc.mean_seconds > 0

    # Memory of this process: the start sample, the forced one and the report's own, current one.
    (memory,) = report.memory_trends
    assert memory.instance == sampler.instance and memory.sample_count == 3 == report.sample_count
    assert memory.last_mb > 0 and memory.peak_mb >= max(memory.first_mb, memory.last_mb)
    assert not memory.growing and memory.warning == ""

    samples, runs = history(gw)
    assert len(samples) == 2 and len(runs) == 2  # the report's own sample is not stored

    # The CLI prints the same report as a table, and as JSON.
    address = gw.running.address
    table = await asyncio.to_thread(run_cli, "perf", "--since", "1h", "--gateway", address, data_dir=tmp_path)
    assert table.returncode == 0, table.stderr
    for text in ("2 analyses succeeded", "◀ bottleneck", "CreateAnalysis", "WatchAnalysis", "stable"):
        assert text in table.stdout, text
    assert report.recommendations[0][:40] in table.stdout
    as_json = await asyncio.to_thread(run_cli, "perf", "--json", "--gateway", address, data_dir=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["analysis_count"] == 2 and data["bottleneck"] == gateway_pb2.Stage.Name(report.bottleneck)
    assert [s["stage"] for s in data["stages"]] == [gateway_pb2.Stage.Name(s) for s in TIMED]
    bad = await asyncio.to_thread(run_cli, "perf", "--since", "soon", "--gateway", address, data_dir=tmp_path)
    assert bad.returncode == 2 and "not a duration" in bad.stderr


async def test_a_negative_window_is_refused_and_old_history_is_deleted(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway(performance={**NO_LOOP, "retention_hours": 1})
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await gw.stub.GetPerformanceReport(
            gateway_pb2.GetPerformanceReportRequest(window=Duration(seconds=-5))
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in field_violations(error.value)] == ["window"]

    old = Sample(datetime.now(UTC) - timedelta(hours=2), "gone", 1)
    await asyncio.to_thread(gw.store.save_performance_sample, old)
    await gw.gateway.sampler.sample_now()
    samples, _ = history(gw)
    assert [s.instance for s in samples] == [gw.gateway.sampler.instance] * 2
    # A window longer than the retention period is cut to it.
    report = await gw.stub.GetPerformanceReport(
        gateway_pb2.GetPerformanceReportRequest(window=Duration(seconds=7 * 86400))
    )
    assert report.window_end_time.ToDatetime() - report.window_start_time.ToDatetime() == timedelta(hours=1)
    assert report.analysis_count == 0 and not report.stages and not report.recommendations
    assert report.bottleneck == gateway_pb2.STAGE_UNSPECIFIED


async def test_the_background_loop_samples_every_interval(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway(performance={"sample_seconds": 0.05})
    await until(lambda: len(history(gw)[0]) >= 3, "three samples from the loop")
