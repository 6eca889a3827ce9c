"""Analyses ride out downstream outages: they wait (RUNNING, with a ``waiting for ...`` warning) for a
service that is down and finish once it is back, with the result of a fault-free run and no batch done
twice; they FAIL with UNAVAILABLE once the outage budget is spent; a resumed analysis waits for its
downstreams to be SERVING before it calls them. Plus the backpressure on oversized requests."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.rpc import code_pb2
from structlog.testing import capture_logs

from briefxai.common.v1 import common_pb2
from briefxai.gateway.v1 import gateway_pb2
from briefxai_clustering.server import build_service as build_clustering
from briefxai_clustering.settings import ClusteringSettings
from briefxai_common.bootstrap import RunningService, start_service
from tests.support.ports import free_port

from .conftest import LOCAL, GatewayFactory, GatewayHandle, conversations, server_calls

pytestmark = pytest.mark.asyncio(loop_scope="session")

FACETS = "briefxai.facets.v1.FacetsService"
EMBEDDING = "briefxai.embedding.v1.EmbeddingService"
CLUSTERING = "briefxai.clustering.v1.ClusteringService"
WAITING_FOR_CLUSTERING = "waiting for the clustering service"
# Quick to give up on a closed port and quick to let a trial call through once it is open again.
CLUSTERING_CALLS: dict[str, Any] = {
    "retry_policies": {"clustering": {"max_attempts": 2, "initial_delay_ms": 10, "max_delay_ms": 50}},
    "circuit_breakers": {"clustering": {"failure_threshold": 2, "open_timeout_ms": 300}},
}


async def clustering_on(port: int) -> RunningService:
    """A clustering service of this test on ``port`` (0: any)."""
    settings = ClusteringSettings.load(**{**LOCAL, "grpc_port": port}, warm_up_map=False, compute_threads=1)
    return await start_service(build_clustering(settings))


async def create(gw: GatewayHandle, convs: list[common_pb2.Conversation]) -> gateway_pb2.Analysis:
    request = gateway_pb2.CreateAnalysisRequest(
        conversations=convs, options=gateway_pb2.AnalysisOptions(k=3, seed=5)
    )
    return (await gw.stub.CreateAnalysis(request)).analysis


async def outcome(gw: GatewayHandle, analysis_id: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every conversation's row (once each) and every cluster of the results, comparable across runs."""
    page = await gw.stub.GetAnalysisResults(
        gateway_pb2.GetAnalysisResultsRequest(id=analysis_id, page_size=1000)
    )
    assert not page.next_page_token
    rows = [
        (r.conversation_id, r.cluster_id, r.withheld, round(r.point.x, 5), round(r.point.y, 5))
        for r in page.conversations
    ]
    assert len({row[0] for row in rows}) == len(rows) == page.total_conversations
    clusters = [(c.cluster.id, c.cluster.name, c.cluster.size, c.cluster.parent_id) for c in page.clusters]
    return sorted(rows), sorted(clusters)


def waiting_for(service: str, update: gateway_pb2.WatchAnalysisResponse) -> bool:
    return any(note.startswith(f"waiting for the {service} service") for note in update.analysis.warnings)


def batch_calls() -> tuple[float, float]:
    return server_calls(FACETS, "ExtractFacets"), server_calls(EMBEDDING, "EmbedTexts")


async def test_an_analysis_waits_for_a_service_that_comes_back(start_gateway: GatewayFactory) -> None:
    clustering = await clustering_on(0)
    port = clustering.grpc_port
    gw = await start_gateway(
        clustering_address=clustering.address, batch_size=4, outage_budget_seconds=120, **CLUSTERING_CALLS
    )
    convs = conversations(24)
    before = batch_calls()
    reference = await create(gw, convs)
    assert (await gw.wait(reference.id))[-1].analysis.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED
    one_run = tuple(after - start for after, start in zip(batch_calls(), before, strict=True))
    assert one_run == (6, 6)

    await clustering.stop(grace=0)
    before = batch_calls()
    run = await create(gw, convs)
    waiting = await gw.wait_until(run.id, lambda u: waiting_for("clustering", u))
    assert waiting.analysis.state == gateway_pb2.ANALYSIS_STATE_RUNNING
    assert waiting.analysis.stage == gateway_pb2.STAGE_CLUSTER
    await asyncio.sleep(1.0)
    back = await clustering_on(port)
    try:
        final = (await gw.wait(run.id))[-1].analysis
        assert final.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, final.error.message
        assert not [note for note in final.warnings if note.startswith("waiting for")]
        # The results say that it ran degraded, and for how long it waited.
        [degraded] = [note for note in final.warnings if note.startswith("ran degraded")]
        waited = int(degraded.split("waited ")[1].split(" s")[0])
        assert "for the clustering service" in degraded and waited >= 1
        # No batch was done twice, and the result is the fault-free one.
        assert tuple(after - start for after, start in zip(batch_calls(), before, strict=True)) == one_run
        assert await outcome(gw, run.id) == await outcome(gw, reference.id)
    finally:
        await back.stop(grace=0)


async def test_a_service_that_never_comes_back_fails_the_analysis_after_the_budget(
    start_gateway: GatewayFactory, closed_address: str
) -> None:
    gw = await start_gateway(clustering_address=closed_address, outage_budget_seconds=1.5, **CLUSTERING_CALLS)
    run = await create(gw, conversations(8))
    updates = await gw.wait(run.id)
    assert any(waiting_for("clustering", u) for u in updates)
    final = updates[-1].analysis
    assert final.state == gateway_pb2.ANALYSIS_STATE_FAILED
    assert final.error.code == code_pb2.UNAVAILABLE
    assert final.error.message.startswith("clustering service unavailable")
    assert "still unavailable after waiting 2 s (outage_budget_seconds 1.5)" in final.error.message


@pytest.mark.parametrize("wait_for_health", [True, False])
async def test_a_resumed_analysis_waits_for_its_services_to_serve(
    start_gateway: GatewayFactory, wait_for_health: bool
) -> None:
    port = free_port()
    settings: dict[str, Any] = {
        "clustering_address": f"127.0.0.1:{port}",
        "batch_size": 4,
        "outage_budget_seconds": 300,
        **CLUSTERING_CALLS,
    }
    first = await start_gateway(**settings)
    run = await create(first, conversations(12))
    await first.wait_until(run.id, lambda u: waiting_for("clustering", u))
    await first.stop()

    before = batch_calls()
    clustered = server_calls(CLUSTERING, "StreamClusterEmbeddings")
    with capture_logs() as logs:
        second = await start_gateway(
            store_url=first.settings.store_url, features={"wait_for_health": wait_for_health}, **settings
        )
        waiting = await second.wait_until(run.id, lambda u: waiting_for("clustering", u))
        clustering = await clustering_on(port)
        try:
            final = (await second.wait(run.id))[-1].analysis
        finally:
            await clustering.stop(grace=0)
    assert final.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, final.error.message
    assert batch_calls() == before
    assert server_calls(CLUSTERING, "StreamClusterEmbeddings") == clustered + 1
    events = {entry["event"] for entry in logs if entry.get("analysis_id") == run.id}
    if wait_for_health:
        # It waited on the health Watch: no call was made (and failed) before the service was up.
        assert any("(UNREACHABLE)" in note for note in waiting.analysis.warnings)
        assert "analysis_resume_waiting" in events and "downstream_outage_waiting" not in events
    else:
        assert "analysis_resume_waiting" not in events and "downstream_outage_waiting" in events


async def test_an_oversized_request_is_resource_exhausted(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway(max_message_mb=1)
    big = [
        common_pb2.Conversation(
            id=f"big-{i}", messages=[common_pb2.Message(role=common_pb2.ROLE_USER, content="x" * 90_000)]
        )
        for i in range(16)
    ]
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await gw.stub.CreateAnalysis(gateway_pb2.CreateAnalysisRequest(conversations=big))
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    listed = await gw.stub.ListAnalyses(gateway_pb2.ListAnalysesRequest())
    assert not listed.analyses
