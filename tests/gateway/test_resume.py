"""Resuming unfinished analyses after a gateway restart, from the checkpoints in the store."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from briefxai.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from briefxai.facets.v1 import facets_pb2, facets_pb2_grpc
from briefxai.gateway.v1 import gateway_pb2
from briefxai_gateway.convert import conversations_from_pb, facet_value_from_pb
from briefxai_gateway.embed_text import embed_text
from briefxai_gateway.models import AnalysisOptions, AnalysisState, EmbedTextMode, PackedBatch, Stage
from briefxai_gateway.store import Store

from .conftest import (
    Downstream,
    GatewayFactory,
    conversations,
    every_downstream,
    retry_until_back,
    server_calls,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

FACETS = "briefxai.facets.v1.FacetsService"
EMBEDDING = "briefxai.embedding.v1.EmbeddingService"
CLUSTERING = "briefxai.clustering.v1.ClusteringService"


async def test_stopped_gateway_resumes_without_redoing_batches(
    start_gateway: GatewayFactory, closed_address: str
) -> None:
    # First gateway: clustering unreachable and retried for minutes, so the analysis sits in the
    # cluster stage with every facets/embed batch checkpointed when the gateway is stopped.
    first = await start_gateway(
        clustering_address=closed_address,
        retry_policies=retry_until_back(max_attempts=10_000, initial_delay_ms=50, max_delay_ms=100),
        circuit_breakers=every_downstream(failure_threshold=1_000_000),
        batch_size=4,
    )
    request = gateway_pb2.CreateAnalysisRequest(conversations=conversations(14), request_id="resume-me")
    created = (await first.stub.CreateAnalysis(request)).analysis
    await first.wait_until(created.id, lambda u: u.analysis.stage == gateway_pb2.STAGE_CLUSTER)
    await first.stop()
    store_url = first.settings.store_url
    with_checkpoints = Store(store_url)
    try:
        stopped = await asyncio.to_thread(with_checkpoints.get_analysis, created.id)
        done = await asyncio.to_thread(with_checkpoints.done_batches, created.id)
    finally:
        with_checkpoints.close()
    assert stopped is not None and stopped.state is AnalysisState.RUNNING
    assert done[Stage.FACETS] == done[Stage.EMBED] == {0, 1, 2, 3}
    assert done[Stage.CLUSTER] == set()

    facets_calls = server_calls(FACETS, "ExtractFacets")
    embed_calls = server_calls(EMBEDDING, "EmbedTexts")
    cluster_calls = server_calls(CLUSTERING, "StreamClusterEmbeddings")
    second = await start_gateway(store_url=store_url, batch_size=4)
    final = (await second.wait(created.id))[-1]
    assert final.analysis.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, final.analysis.error.message
    assert server_calls(FACETS, "ExtractFacets") == facets_calls
    assert server_calls(EMBEDDING, "EmbedTexts") == embed_calls
    assert server_calls(CLUSTERING, "StreamClusterEmbeddings") == cluster_calls + 1
    page = await second.stub.GetAnalysisResults(gateway_pb2.GetAnalysisResultsRequest(id=created.id))
    assert page.total_conversations == 14 and len(page.conversations) == 14


async def test_crafted_running_analysis_resumes_from_its_checkpoints(
    start_gateway: GatewayFactory, downstream: Downstream, tmp_path: object
) -> None:
    """A RUNNING analysis left by 'an earlier gateway' with batch 0 done and batch 1 half done (facets
    only) is finished by a new one: stored facet values are kept as they were, and only the missing
    work is sent out (facets of batch 2, embeddings of batches 1 and 2)."""
    store_url = f"sqlite:///{tmp_path}/crafted.db"
    convs = conversations(20)
    domain = conversations_from_pb(convs)
    store = Store(store_url)
    try:
        store.migrate()
        options = AnalysisOptions(embed_text=EmbedTextMode.FIRST_USER_MESSAGE)
        store.create_analysis("crafted", request_id="", options=options, batch_size=8, conversations=domain)
        assert store.set_running("crafted")
        async with grpc.aio.insecure_channel(downstream.facets.address) as channel:
            reply = await facets_pb2_grpc.FacetsServiceStub(channel).ExtractFacets(
                facets_pb2.ExtractFacetsRequest(conversations=convs[:16])
            )
        values = [[facet_value_from_pb(v) for v in item.values] for item in reply.results]
        for per_conversation in values:
            for value in per_conversation:
                value.provider = "earlier-run"
        store.save_facets_batch("crafted", 0, 0, values[:8], {})
        store.save_facets_batch("crafted", 1, 8, values[8:], {})
        texts = [embed_text(c, EmbedTextMode.FIRST_USER_MESSAGE, 1200).text for c in domain[:8]]
        async with grpc.aio.insecure_channel(downstream.embedding.address) as channel:
            embedded = await embedding_pb2_grpc.EmbeddingServiceStub(channel).EmbedTexts(
                embedding_pb2.EmbedTextsRequest(texts=texts)
            )
        vectors = PackedBatch(embedded.vectors.data, embedded.vectors.dim, embedded.vectors.count)
        store.save_embeddings_batch("crafted", 0, 0, vectors, embedded.model, {})
    finally:
        store.close()

    facets_calls = server_calls(FACETS, "ExtractFacets")
    embed_calls = server_calls(EMBEDDING, "EmbedTexts")
    gw = await start_gateway(store_url=store_url, batch_size=8)
    updates = await gw.wait("crafted")
    assert updates[-1].analysis.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, updates[
        -1
    ].analysis.error.message
    assert server_calls(FACETS, "ExtractFacets") == facets_calls + 1
    assert server_calls(EMBEDDING, "EmbedTexts") == embed_calls + 2
    kept = await asyncio.to_thread(gw.store.load_facets, "crafted", 0, 20)
    providers = {ordinal: {v.provider for v in values} for ordinal, values in kept.items()}
    assert all(providers[i] == {"earlier-run"} for i in range(16))
    assert all("earlier-run" not in providers[i] for i in range(16, 20))
    done = await asyncio.to_thread(gw.store.done_batches, "crafted")
    assert done[Stage.FACETS] == done[Stage.EMBED] == {0, 1, 2}
