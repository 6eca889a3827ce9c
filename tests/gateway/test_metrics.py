"""Metrics of the gateway and its real downstream services: the shared per-service series on all four,
``promtool check metrics`` on every /metrics, stages, store calls, privacy withholding, queue depth,
and the downstream series (their failures are asserted in test_service's breaker test)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from briefxai.gateway.v1 import gateway_pb2
from tests.support.http import http_get
from tests.support.promtool import check_metrics

from .conftest import Downstream, GatewayFactory, GatewayHandle, conversations, metric_value

pytestmark = pytest.mark.asyncio(loop_scope="session")

SUCCEEDED = gateway_pb2.ANALYSIS_STATE_SUCCEEDED
RPCS = {
    "gateway": "CreateAnalysis",
    "facets": "ExtractFacets",
    "embedding": "EmbedTexts",
    "clustering": "StreamClusterEmbeddings",
}


async def metrics_text(port: int) -> str:
    status, body = await asyncio.to_thread(http_get, port, "/metrics")
    assert status == 200
    return body.decode()


async def analyse(gw: GatewayHandle, count: int, **options: Any) -> gateway_pb2.Analysis:
    request = gateway_pb2.CreateAnalysisRequest(
        conversations=conversations(count), options=gateway_pb2.AnalysisOptions(**options)
    )
    created = (await gw.stub.CreateAnalysis(request)).analysis
    return (await gw.wait(created.id))[-1].analysis


def ops(service: str, operation: str, status: str = "OK") -> float:
    return metric_value(
        "briefxai_operations_total", {"service": service, "operation": operation, "status": status}
    )


async def test_every_service_exports_the_shared_series_and_passes_promtool(
    start_gateway: GatewayFactory, downstream: Downstream
) -> None:
    gw = await start_gateway()
    assert (await analyse(gw, 12)).state == SUCCEEDED
    ports = {
        "gateway": gw.running.http_port,
        "facets": downstream.facets.http_port,
        "embedding": downstream.embedding.http_port,
        "clustering": downstream.clustering.http_port,
    }
    for service, port in ports.items():
        text = await metrics_text(port)
        await asyncio.to_thread(check_metrics, text)
        for series in (
            f'briefxai_memory_usage_bytes{{service="{service}"}}',
            f'briefxai_active_sessions{{service="{service}"}}',
            f'briefxai_event_loop_lag_seconds_count{{service="{service}"}}',
            f'briefxai_errors_total{{kind="internal",service="{service}"}}',
            f'briefxai_operations_total{{operation="{RPCS[service]}",service="{service}",status="UNAVAILABLE"}}',
        ):
            assert series in text, (service, series)
        assert metric_value("briefxai_memory_usage_bytes", {"service": service}) > 0
        assert ops(service, RPCS[service]) >= 1, service
        assert (
            metric_value(
                "briefxai_operation_duration_seconds_count", {"service": service, "operation": RPCS[service]}
            )
            >= 1
        )


async def test_stages_store_calls_and_withheld_conversations(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway()
    stages = ("validate", "facets", "embed", "cluster", "store")
    before = {stage: ops("gateway", f"stage_{stage}") for stage in stages}
    stored = ops("gateway", "store_save_results")
    created = ops("gateway", "store_create_analysis")
    withheld = metric_value("briefxai_conversations_withheld_total")

    # Seven distinct users in all: clusters need more than that to be shown, so every one is withheld.
    analysis = await analyse(gw, 16, min_distinct_users=8)
    assert analysis.state == SUCCEEDED

    for stage in stages:
        assert ops("gateway", f"stage_{stage}") > before[stage], stage
    assert ops("gateway", "stage_facets") - before["facets"] == 2  # two batches of 8
    assert ops("gateway", "store_save_results") == stored + 1
    assert ops("gateway", "store_create_analysis") == created + 1
    seconds = metric_value(
        "briefxai_operation_duration_seconds_count", {"service": "gateway", "operation": "store_get_analysis"}
    )
    assert seconds >= 1
    page = await gw.stub.GetAnalysisResults(gateway_pb2.GetAnalysisResultsRequest(id=analysis.id))
    assert page.withheld_conversations > 0
    assert metric_value("briefxai_conversations_withheld_total") == withheld + page.withheld_conversations
    # Stage series of the old name keep working.
    assert metric_value("briefxai_stage_seconds_count", {"stage": "facets"}) >= 2


async def test_repeated_request_ids_are_not_store_errors(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway()
    errors = metric_value("briefxai_errors_total", {"service": "gateway", "kind": "store"})
    request = gateway_pb2.CreateAnalysisRequest(conversations=conversations(6), request_id="same-request")
    first = (await gw.stub.CreateAnalysis(request)).analysis
    again = (await gw.stub.CreateAnalysis(request)).analysis
    assert again.id == first.id
    await gw.wait(first.id)
    assert metric_value("briefxai_errors_total", {"service": "gateway", "kind": "store"}) == errors


async def test_queue_depth_and_active_sessions_follow_the_scheduler(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway(max_concurrent_analyses=1, max_queued_analyses=4)
    ids = [
        (
            await gw.stub.CreateAnalysis(gateway_pb2.CreateAnalysisRequest(conversations=conversations(8)))
        ).analysis.id
        for _ in range(3)
    ]
    scheduler = gw.gateway.manager.scheduler
    # Read together, without yielding to the loop in between.
    queued, running = scheduler.queued_count, scheduler.running_count
    assert metric_value("briefxai_analyses_queued") == queued
    assert metric_value("briefxai_active_sessions", {"service": "gateway"}) == queued + running
    assert queued + running >= 1
    for analysis_id in ids:
        await gw.wait(analysis_id)
    # A run's bookkeeping (its lease released in the store) ends just after its SUCCEEDED is visible.
    for _ in range(200):
        if scheduler.running_count == 0:
            break
        await asyncio.sleep(0.05)
    assert metric_value("briefxai_analyses_queued") == 0
    assert metric_value("briefxai_active_sessions", {"service": "gateway"}) == 0


async def test_downstream_series_exist_at_zero(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway()
    text = await metrics_text(gw.running.http_port)
    for name in ("facets", "embedding", "clustering"):
        assert f'briefxai_downstream_retries_total{{service="{name}"}}' in text
        assert f'briefxai_circuit_breaker_state{{breaker="{name}",service="gateway"}} 0.0' in text
    for kind in ("downstream", "store", "unavailable"):
        assert f'briefxai_errors_total{{kind="{kind}",service="gateway"}}' in text
    for stage in ("validate", "facets", "embed", "cluster", "store"):
        assert f'briefxai_operations_total{{operation="stage_{stage}",service="gateway",status="OK"}}' in text
    assert (
        'briefxai_operations_total{operation="store_save_results",service="gateway",status="INTERNAL"}'
        in text
    )
    assert "briefxai_analyses_queued 0.0" in text
