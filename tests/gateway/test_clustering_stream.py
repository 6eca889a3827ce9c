"""The gateway's StreamClusterEmbeddings client against the real clustering service: chunked analyses,
retries that restart the stream from the first chunk, and failures while producing chunks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from briefxai.gateway.v1 import gateway_pb2
from briefxai_common.bootstrap import start_service
from briefxai_common.vectors import pack_vectors
from briefxai_gateway import pipeline
from briefxai_gateway.clients import GrpcClusteringClient
from briefxai_gateway.models import ClusteringChunk, ClusteringInput, ClusteringOutput, PackedBatch
from tests.clustering.gated_namer import GatedNamer
from tests.clustering.synthetic import make_data

from .conftest import (
    Downstream,
    GatewayFactory,
    GatewayHandle,
    conversations,
    every_downstream,
    gateway_settings,
    retry_until_back,
)
from .test_service import all_results

pytestmark = pytest.mark.asyncio(loop_scope="session")

CLUSTERING = "briefxai.clustering.v1.ClusteringService"


def received(method: str) -> float:
    value = REGISTRY.get_sample_value(
        "grpc_server_msg_received_total",
        {"grpc_type": "client_stream", "grpc_service": CLUSTERING, "grpc_method": method},
    )
    return 0.0 if value is None else value


async def results(gw: GatewayHandle, analysis_id: str) -> list[tuple[str, str, bool]]:
    pages = await all_results(gw, analysis_id, page_size=100)
    return [(r.conversation_id, r.cluster_id, r.withheld) for p in pages for r in p.conversations]


async def test_analysis_streams_unaligned_chunks_with_the_same_result(
    start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = await start_gateway(batch_size=8)
    request = gateway_pb2.CreateAnalysisRequest(
        conversations=conversations(30), options=gateway_pb2.AnalysisOptions(k=3, seed=5)
    )
    whole = (await gw.stub.CreateAnalysis(request)).analysis
    assert (await gw.wait(whole.id))[-1].analysis.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED

    monkeypatch.setattr(pipeline, "CLUSTER_CHUNK_VECTORS", 7)  # chunks of 7 over embedding batches of 8
    before = received("StreamClusterEmbeddings")
    chunked = (await gw.stub.CreateAnalysis(request)).analysis
    final = (await gw.wait(chunked.id))[-1]
    assert final.analysis.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, final.analysis.error.message
    assert received("StreamClusterEmbeddings") - before == 1 + 5  # the header, then 7+7+7+7+2 vectors
    assert await results(gw, chunked.id) == await results(gw, whole.id)


def chunked_input(n: int, size: int, log: list[int], fail_at: int | None = None) -> ClusteringInput:
    """``n`` synthetic vectors in chunks of ``size``; ``log`` records each chunk index as it is made."""
    data = make_data(n, centers=3, dim=16, seed=2)

    async def chunks() -> AsyncIterator[ClusteringChunk]:
        for index, start in enumerate(range(0, n, size)):
            if index == fail_at:
                raise RuntimeError("the store went away")
            log.append(index)
            end = min(n, start + size)
            raw, dim, count = pack_vectors(data.vectors[start:end])
            yield ClusteringChunk(
                PackedBatch(raw, dim, count),
                data.ids[start:end],
                data.user_ids[start:end],
                data.texts[start:end],
            )
            await asyncio.sleep(0)

    return ClusteringInput(
        count=n,
        chunks=chunks,
        k=None,
        hierarchy_depth=None,
        min_cluster_size=None,
        min_distinct_users=None,
        seed=1,
    )


async def test_an_error_while_producing_chunks_is_raised_not_a_cancellation(
    downstream: Downstream, tmp_path: object
) -> None:
    client = GrpcClusteringClient(gateway_settings(f"sqlite:///{tmp_path}/x.db", downstream))
    try:
        log: list[int] = []
        with pytest.raises(RuntimeError, match="the store went away"):
            await client.cluster(chunked_input(50, 10, log, fail_at=2))
        assert log == [0, 1]  # not retried: the error is not a transient gRPC failure
        log.clear()
        output = await client.cluster(chunked_input(50, 10, log))
        assert len(output.assignments) == 50 and log == [0, 1, 2, 3, 4]
    finally:
        await client.downstream.close()


async def test_a_retried_stream_starts_again_from_the_first_chunk(
    downstream: Downstream, tmp_path: object
) -> None:
    from briefxai_clustering.server import build_service
    from briefxai_clustering.settings import ClusteringSettings

    namer = GatedNamer()
    settings = ClusteringSettings.load(
        host="127.0.0.1",
        grpc_port=0,
        http_port=0,
        grace_period_seconds=0,
        warm_up_map=False,
        compute_threads=1,
        max_concurrent_jobs=1,
        max_queued_jobs=0,
    )
    busy = await start_service(build_service(settings, namer))
    client = GrpcClusteringClient(
        gateway_settings(
            f"sqlite:///{tmp_path}/x.db",
            downstream,
            clustering_address=busy.address,
            clustering_max_concurrent_calls=2,
            # the busy service asks for a 5 s wait (RetryInfo): the policy allows it
            retry_policies=retry_until_back(max_attempts=1000, initial_delay_ms=20, max_delay_ms=10_000),
            circuit_breakers=every_downstream(failure_threshold=1_000_000),
        )
    )
    tasks: list[asyncio.Task[ClusteringOutput]] = []
    try:
        # The first job holds the only slot; the next stream is refused (RESOURCE_EXHAUSTED) and retried.
        first = asyncio.create_task(client.cluster(chunked_input(40, 40, [])))
        tasks.append(first)
        assert await asyncio.to_thread(namer.entered.wait, 30)
        log: list[int] = []
        second = asyncio.create_task(client.cluster(chunked_input(45, 10, log)))
        tasks.append(second)
        for _ in range(600):
            if log.count(0) >= 2:
                break
            await asyncio.sleep(0.05)
        assert log.count(0) >= 2  # at least two attempts, each from chunk 0
        namer.gate.set()
        assert len((await first).assignments) == 40
        output = await asyncio.wait_for(second, 60)
        assert len(output.assignments) == 45
        last = len(log) - 1 - log[::-1].index(0)
        assert log[last:] == [0, 1, 2, 3, 4]  # the successful attempt sent every chunk, in order
    finally:
        namer.gate.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.downstream.close()
        await busy.stop(grace=0)
