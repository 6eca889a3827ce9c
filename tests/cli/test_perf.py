"""``briefxai perf`` without a gateway: durations, rendering a hand-made report, usage and connection errors.
(Against a real gateway: tests/gateway/test_performance_service.py.)"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console

from briefxai.gateway.v1 import gateway_pb2
from briefxai_cli import render
from briefxai_cli.client import parse_duration
from briefxai_cli.main import cli
from briefxai_cli.supervisor import free_ports


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("90", 90),
        ("90s", 90),
        ("30m", 1800),
        ("24h", 86400),
        ("7d", 604800),
        ("2w", 1209600),
        ("1h30m", 5400),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "24x", "h", "1h 30m", "nan", "inf"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def rendered(report: gateway_pb2.GetPerformanceReportResponse) -> str:
    console = Console(width=200, record=True)
    console.print(render.performance_report(report))
    return console.export_text()


def test_the_report_as_tables() -> None:
    report = gateway_pb2.GetPerformanceReportResponse(
        window_start_time=Timestamp(seconds=1_800_000_000),
        window_end_time=Timestamp(seconds=1_800_086_400),
        analysis_count=2,
        conversation_count=800,
        conversations_per_second=120.0,
        stages=[
            gateway_pb2.StagePerformance(
                stage=gateway_pb2.STAGE_EMBED,
                conversation_count=800,
                seconds=5.0,
                conversations_per_second=160.0,
                share=0.62,
                earlier_conversations_per_second=200.0,
                later_conversations_per_second=150.0,
                trend=-0.25,
            ),
            gateway_pb2.StagePerformance(
                stage=gateway_pb2.STAGE_STORE,
                conversation_count=800,
                seconds=0.5,
                conversations_per_second=1600,
            ),
        ],
        bottleneck=gateway_pb2.STAGE_EMBED,
        rpc_latencies=[
            gateway_pb2.RpcLatency(
                method="GetAnalysis",
                grpc_type="unary",
                count=12,
                mean_seconds=0.004,
                p50_seconds=0.003,
                p95_seconds=0.009,
                p99_seconds=1.5,
            )
        ],
        memory_trends=[
            gateway_pb2.MemoryTrend(
                instance="host:1:abc",
                sample_count=9,
                first_mb=200,
                last_mb=500,
                peak_mb=510,
                slope_mb_per_hour=75,
                growing=True,
                warning="memory grew from 200 MB to 500 MB (+75 MB/h over 4.0 h)",
            )
        ],
        recommendations=[
            "embed is the bottleneck (62% of the analyses' run time, 160.0 conversations/s): ..."
        ],
        sample_count=9,
    )
    text = rendered(report)
    assert "2 analyses succeeded, 800 conversations, 120.0 conversations/s end to end; 9 samples" in text
    assert "(1d00h" not in text and "(24h00m)" in text
    assert "embed ◀ bottleneck" in text and "200.0 → 150.0" in text and "-25%" in text
    assert "GetAnalysis" in text and "3.0 ms" in text and "1.50 s" in text
    assert "growing: memory grew from 200 MB to 500 MB" in text
    assert "• embed is the bottleneck (62%" in text


def test_an_empty_report_says_so() -> None:
    text = rendered(gateway_pb2.GetPerformanceReportResponse())
    assert "no analysis succeeded in the window" in text
    assert "recommendations: none" in text


def test_usage_and_connection_errors() -> None:
    gateway = f"127.0.0.1:{free_ports(1)[0]}"
    result = CliRunner().invoke(cli, ["perf", "--since", "-5m", "--gateway", gateway])
    assert result.exit_code == 2 and "--since" in result.stderr
    result = CliRunner().invoke(cli, ["perf", "--gateway", gateway])
    assert result.exit_code == 1 and result.stderr.startswith("error: UNAVAILABLE")
    assert len(result.stderr.strip().splitlines()) == 1
