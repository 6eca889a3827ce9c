"""The gateway end to end: real embedding, facets and clustering services, real sockets, a SQLite store."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from briefxai.common.v1 import common_pb2
from briefxai.gateway.v1 import gateway_pb2
from briefxai_common.bootstrap import start_service
from briefxai_facets.server import build_service as build_facets
from briefxai_facets.settings import FacetsSettings
from briefxai_gateway.models import Stage
from tests.support.errors import field_violations
from tests.support.ports import free_port

from .conftest import (
    LOCAL,
    TERMINAL,
    GatewayFactory,
    GatewayHandle,
    conversation,
    conversations,
    every_downstream,
    metric_value,
    retry_until_back,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

SUCCEEDED = gateway_pb2.ANALYSIS_STATE_SUCCEEDED
FAILED = gateway_pb2.ANALYSIS_STATE_FAILED
CANCELLED = gateway_pb2.ANALYSIS_STATE_CANCELLED
STAGES = [
    gateway_pb2.STAGE_VALIDATE,
    gateway_pb2.STAGE_FACETS,
    gateway_pb2.STAGE_EMBED,
    gateway_pb2.STAGE_CLUSTER,
    gateway_pb2.STAGE_STORE,
]


def http_get(port: int, path: str) -> bytes:
    """Blocking: call it through asyncio.to_thread (the HTTP side port runs on the test's loop)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        body: bytes = response.read()
        return body


async def create(
    gw: GatewayHandle,
    convs: Sequence[common_pb2.Conversation],
    request_id: str = "",
    **options: Any,
) -> gateway_pb2.Analysis:
    request = gateway_pb2.CreateAnalysisRequest(
        conversations=convs, options=gateway_pb2.AnalysisOptions(**options), request_id=request_id
    )
    return (await gw.stub.CreateAnalysis(request)).analysis


async def all_results(
    gw: GatewayHandle, analysis_id: str, page_size: int
) -> list[gateway_pb2.GetAnalysisResultsResponse]:
    pages = []
    token = ""
    while True:
        page = await gw.stub.GetAnalysisResults(
            gateway_pb2.GetAnalysisResultsRequest(id=analysis_id, page_size=page_size, page_token=token)
        )
        pages.append(page)
        token = page.next_page_token
        if not token:
            return pages


async def test_create_watch_get_results_list_delete(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway()
    created = await create(gw, conversations(30), display_name="three topics", k=3, seed=7)
    assert created.state == gateway_pb2.ANALYSIS_STATE_PENDING
    assert created.conversation_count == 30
    assert created.options.embed_text == gateway_pb2.EMBED_TEXT_CONVERSATION  # the configured default

    updates = await gw.wait(created.id)
    final = updates[-1]
    assert final.analysis.state == SUCCEEDED, final.analysis.error.message
    assert final.analysis.stage == gateway_pb2.STAGE_STORE
    assert [(s.stage, s.done, s.total) for s in final.analysis.stages] == [
        (stage, 30, 30) for stage in STAGES
    ]
    assert final.eta_seconds == 0.0
    assert all(u.analysis.state not in TERMINAL for u in updates[:-1])
    facets_done = [
        next(s.done for s in u.analysis.stages if s.stage == gateway_pb2.STAGE_FACETS) for u in updates
    ]
    assert facets_done == sorted(facets_done)

    got = (await gw.stub.GetAnalysis(gateway_pb2.GetAnalysisRequest(id=created.id))).analysis
    assert got.state == SUCCEEDED
    assert got.options.display_name == "three topics"
    assert got.update_time.ToDatetime() >= got.create_time.ToDatetime()
    # "analyses/{id}" is accepted as well as the bare id.
    assert (
        await gw.stub.GetAnalysis(gateway_pb2.GetAnalysisRequest(id=f"analyses/{created.id}"))
    ).analysis.id == created.id

    pages = await all_results(gw, created.id, page_size=7)
    assert len(pages) == 5
    first = pages[0]
    assert first.total_conversations == 30
    assert first.k == 3 and first.k_rule
    assert all(not p.clusters for p in pages[1:])
    clusters = {c.cluster.id: c for c in first.clusters}
    base = [c for c in first.clusters if c.cluster.level == 0]
    assert len(base) + first.withheld_conversations >= 1
    results = [c for p in pages for c in p.conversations]
    assert [r.conversation_id for r in results] == [f"conv-{i:04d}" for i in range(30)]
    reported = [r for r in results if not r.withheld]
    assert len(reported) == 30 - first.withheld_conversations
    for item in reported:
        assert item.cluster_id in clusters
        assert clusters[item.cluster_id].cluster.level == 0
        assert item.point.conversation_id == item.conversation_id
    for item in results:
        names = {f.facet for f in item.facets}
        assert {"request", "task", "language", "sentiment", "concerning"} <= names
    for cluster in base:
        size = sum(1 for r in reported if r.cluster_id == cluster.cluster.id)
        assert cluster.cluster.size == size
        assert cluster.cluster.name
        distributions = {d.facet: d for d in cluster.facets}
        assert "request" not in distributions
        assert sum(distributions["task"].counts.values()) == size
        assert set(distributions["sentiment"].counts) == {"negative", "neutral", "positive"}
        assert sum(distributions["sentiment"].counts.values()) == size
        assert distributions["sentiment"].HasField("mean")
        assert set(distributions["concerning"].counts) == {"1", "2", "3", "4", "5"}
        assert not distributions["task"].HasField("mean")

    # Two more analyses, then list them newest first, one per page.
    second = await create(gw, conversations(6), display_name="second")
    third = await create(gw, conversations(6), display_name="third")
    listed: list[str] = []
    token = ""
    while True:
        page = await gw.stub.ListAnalyses(gateway_pb2.ListAnalysesRequest(page_size=1, page_token=token))
        assert len(page.analyses) == 1
        listed.append(page.analyses[0].id)
        token = page.next_page_token
        if not token:
            break
    assert listed == [third.id, second.id, created.id]
    for other in (second, third):
        assert (await gw.wait(other.id))[-1].analysis.state == SUCCEEDED

    counts = await asyncio.to_thread(gw.store.row_counts, created.id)
    assert counts["conversations"] == 30 and counts["facet_values"] > 0 and counts["embeddings"] == 4
    await gw.stub.DeleteAnalysis(gateway_pb2.DeleteAnalysisRequest(id=created.id))
    assert set((await asyncio.to_thread(gw.store.row_counts, created.id)).values()) == {0}
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await gw.stub.GetAnalysis(gateway_pb2.GetAnalysisRequest(id=created.id))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    # The other analyses are untouched.
    assert (await asyncio.to_thread(gw.store.row_counts, second.id))["conversations"] == 6


async def test_create_is_idempotent_on_request_id(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway()
    first = await create(gw, conversations(5), request_id="req-42")
    again = await create(gw, conversations(9), request_id="req-42")
    assert again.id == first.id
    assert again.request_id == "req-42"
    assert again.conversation_count == 5
    listed = await gw.stub.ListAnalyses(gateway_pb2.ListAnalysesRequest())
    assert [a.id for a in listed.analyses] == [first.id]
    assert (await gw.wait(first.id))[-1].analysis.state == SUCCEEDED


async def upload_stream(
    header: gateway_pb2.UploadHeader | None, batches: Sequence[Sequence[common_pb2.Conversation]]
) -> AsyncIterator[gateway_pb2.UploadAnalysisRequest]:
    if header is not None:
        yield gateway_pb2.UploadAnalysisRequest(header=header)
    for batch in batches:
        yield gateway_pb2.UploadAnalysisRequest(batch=gateway_pb2.ConversationBatch(conversations=batch))


async def test_upload_streams_batches(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway()
    header = gateway_pb2.UploadHeader(
        options=gateway_pb2.AnalysisOptions(
            facets=["task", "sentiment"], embed_text=gateway_pb2.EMBED_TEXT_REQUEST_SUMMARY
        ),
        request_id="upload-1",
    )
    batches = [conversations(7), conversations(7, start=7), conversations(4, start=14)]
    uploaded = (await gw.stub.UploadAnalysis(upload_stream(header, batches))).analysis
    assert uploaded.conversation_count == 18
    assert uploaded.options.embed_text == gateway_pb2.EMBED_TEXT_REQUEST_SUMMARY
    assert (await gw.wait(uploaded.id))[-1].analysis.state == SUCCEEDED
    pages = await all_results(gw, uploaded.id, page_size=100)
    conversations_out = pages[0].conversations
    assert [c.conversation_id for c in conversations_out] == [f"conv-{i:04d}" for i in range(18)]
    # Only the requested facets, plus `request`, which REQUEST_SUMMARY embeds.
    assert {f.facet for f in conversations_out[0].facets} == {"task", "sentiment", "request"}
    # Same request id again: the first analysis comes back, nothing new is stored.
    again = (await gw.stub.UploadAnalysis(upload_stream(header, batches[:1]))).analysis
    assert again.id == uploaded.id and again.conversation_count == 18


async def test_upload_with_bad_batches_is_refused_and_leaves_nothing(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway()
    header = gateway_pb2.UploadHeader(options=gateway_pb2.AnalysisOptions())
    duplicate = [conversations(3), [conversation(3), conversation(1)]]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await gw.stub.UploadAnalysis(upload_stream(header, duplicate))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "duplicate" in dict(field_violations(info.value))["conversations[4].id"]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await gw.stub.UploadAnalysis(upload_stream(None, [conversations(2)]))
    assert "header" in dict(field_violations(info.value))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await gw.stub.UploadAnalysis(upload_stream(header, []))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    listed = await gw.stub.ListAnalyses(gateway_pb2.ListAnalysesRequest())
    assert list(listed.analyses) == []
    assert await asyncio.to_thread(gw.store.abandoned_uploads) == []


async def test_invalid_arguments_have_field_violations_and_the_service_keeps_serving(
    start_gateway: GatewayFactory,
) -> None:
    gw = await start_gateway()
    bad = [
        conversation(0),
        common_pb2.Conversation(
            id="", messages=[common_pb2.Message(role=common_pb2.ROLE_USER, content="hi")]
        ),
        conversation(0),
        common_pb2.Conversation(id="empty"),
        common_pb2.Conversation(
            id="roles",
            messages=[
                common_pb2.Message(role=common_pb2.ROLE_UNSPECIFIED, content="x"),
                common_pb2.Message(role=common_pb2.ROLE_USER, content=""),
            ],
        ),
    ]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        # k and the depth are above the clustering service's own limits (200 and 6; asked with GetLimits).
        await create(gw, bad, k=201, hierarchy_depth=99, facets=["task", "no_such_facet"])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(dict(field_violations(info.value))) == {
        "conversations[1].id",
        "conversations[2].id",
        "conversations[3].messages",
        "conversations[4].messages[0].role",
        "conversations[4].messages[1].content",
        "options.k",
        "options.hierarchy_depth",
        "options.facets[1]",
    }
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await create(gw, [])
    assert set(dict(field_violations(info.value))) == {"conversations"}
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await gw.stub.ListAnalyses(gateway_pb2.ListAnalysesRequest(page_token="garbage!"))
    assert set(dict(field_violations(info.value))) == {"page_token"}
    # Nothing was stored, and the service still answers.
    assert list((await gw.stub.ListAnalyses(gateway_pb2.ListAnalysesRequest())).analyses) == []
    async with grpc.aio.insecure_channel(gw.running.address) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    ok = await create(gw, conversations(4))
    assert (await gw.wait(ok.id))[-1].analysis.state == SUCCEEDED


def _forged_token(payload: Mapping[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


async def test_forged_page_tokens_are_invalid_arguments(start_gateway: GatewayFactory) -> None:
    """Well-formed tokens with values the store cannot take (past 64 bits, JSON true, negative) are the
    caller's error, not UNKNOWN with an exception text."""
    gw = await start_gateway()
    ok = await create(gw, conversations(4))
    await gw.wait(ok.id)
    list_tokens = [{"kind": "list", "before": value} for value in (2**70, True, -1, "7")]
    results_tokens = [
        {"kind": "results", "id": ok.id, "offset": 2**70},
        {"kind": "results", "id": ok.id, "offset": True},
        {"kind": "results", "id": ok.id, "offset": 0, "revision": 2**64},
        {"kind": "results", "id": ok.id, "offset": 0, "revision": False},
    ]
    calls = [
        *(
            gw.stub.ListAnalyses(gateway_pb2.ListAnalysesRequest(page_token=_forged_token(t)))
            for t in list_tokens
        ),
        *(
            gw.stub.GetAnalysisResults(
                gateway_pb2.GetAnalysisResultsRequest(id=ok.id, page_token=_forged_token(t))
            )
            for t in results_tokens
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(dict(field_violations(info.value))) == {"page_token"}
    assert [a.id for a in (await gw.stub.ListAnalyses(gateway_pb2.ListAnalysesRequest())).analyses] == [ok.id]


async def test_unknown_ids_are_not_found(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway()
    calls = [
        gw.stub.GetAnalysis(gateway_pb2.GetAnalysisRequest(id="missing")),
        gw.stub.CancelAnalysis(gateway_pb2.CancelAnalysisRequest(id="missing")),
        gw.stub.DeleteAnalysis(gateway_pb2.DeleteAnalysisRequest(id="missing")),
        gw.stub.GetAnalysisResults(gateway_pb2.GetAnalysisResultsRequest(id="missing")),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await gw.wait("missing")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await gw.stub.GetAnalysis(gateway_pb2.GetAnalysisRequest(id=""))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_cancel_stops_a_running_analysis(start_gateway: GatewayFactory, closed_address: str) -> None:
    # Clustering points at a port nobody listens on and retries go on for minutes: the analysis is
    # stuck in the cluster stage until it is cancelled.
    gw = await start_gateway(
        clustering_address=closed_address,
        retry_policies=retry_until_back(max_attempts=10_000, initial_delay_ms=50, max_delay_ms=100),
        circuit_breakers=every_downstream(failure_threshold=1_000_000),
        max_concurrent_analyses=1,
        max_queued_analyses=1,
    )
    running = await create(gw, conversations(10))
    await gw.wait_until(running.id, lambda u: u.analysis.stage == gateway_pb2.STAGE_CLUSTER)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await gw.stub.GetAnalysisResults(gateway_pb2.GetAnalysisResultsRequest(id=running.id))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    queued = await create(gw, conversations(3))
    assert (await gw.stub.GetAnalysis(gateway_pb2.GetAnalysisRequest(id=queued.id))).analysis.state == (
        gateway_pb2.ANALYSIS_STATE_PENDING
    )
    # One running + one queued: the next one is refused.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await create(gw, conversations(3))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = rpc_status.from_call(info.value).details  # type: ignore[arg-type, union-attr]
    error_info, retry_info = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert details[0].Unpack(error_info) and details[1].Unpack(retry_info)
    assert (error_info.reason, error_info.metadata["queued"]) == ("ANALYSIS_QUEUE_FULL", "1")
    assert retry_info.retry_delay.seconds > 0

    watch = asyncio.create_task(gw.wait(running.id))
    cancelled = (await gw.stub.CancelAnalysis(gateway_pb2.CancelAnalysisRequest(id=running.id))).analysis
    assert cancelled.state == CANCELLED
    updates = await watch
    assert updates[-1].analysis.state == CANCELLED
    # Cancelling again changes nothing; the queued analysis now runs (and gets stuck the same way).
    again = (await gw.stub.CancelAnalysis(gateway_pb2.CancelAnalysisRequest(id=running.id))).analysis
    assert again.state == CANCELLED
    await gw.wait_until(queued.id, lambda u: u.analysis.state == gateway_pb2.ANALYSIS_STATE_RUNNING)
    await gw.stub.DeleteAnalysis(gateway_pb2.DeleteAnalysisRequest(id=queued.id))
    assert set((await asyncio.to_thread(gw.store.row_counts, queued.id)).values()) == {0}
    assert gw.gateway.manager.running_count == 0


async def test_values_from_a_later_provider_of_the_chain_are_recorded(start_gateway: GatewayFactory) -> None:
    """The facets chain [openai, heuristic] with its LLM unreachable: the analysis succeeds on the
    heuristic values and says which provider served them instead of the first."""
    unreachable = {
        "base_url": f"http://127.0.0.1:{free_port()}/v1",
        "model": "gone",
        "api_key_env": "BRIEFXAI_TEST_UNSET_KEY",
        "timeout_seconds": 1.0,
        "max_attempts": 1,
    }
    facets = await start_service(
        build_facets(FacetsSettings.load(**LOCAL, providers=["openai", "heuristic"], openai=unreachable))
    )
    try:
        gw = await start_gateway(facets_address=facets.address)
        done = await create(gw, conversations(6))
        final = (await gw.wait(done.id))[-1].analysis
        assert final.state == SUCCEEDED
        served = [w for w in final.warnings if "came from 'heuristic'" in w]
        assert len(served) == 1 and "not the first provider of the chain" in served[0]
    finally:
        await facets.stop(grace=0)


async def test_breaker_opens_when_a_downstream_stops(start_gateway: GatewayFactory) -> None:
    facets = await start_service(build_facets(FacetsSettings.load(**LOCAL)))
    gw = await start_gateway(
        facets_address=facets.address,
        retry_policies=every_downstream(max_attempts=2, initial_delay_ms=10, max_delay_ms=20),
        circuit_breakers=every_downstream(failure_threshold=2, open_timeout_ms=600_000),
        outage_budget_seconds=0,
    )
    ok = await create(gw, conversations(6))
    assert (await gw.wait(ok.id))[-1].analysis.state == SUCCEEDED
    downstream_errors = metric_value("briefxai_errors_total", {"service": "gateway", "kind": "downstream"})
    await facets.stop(grace=0)

    failed = await create(gw, conversations(6))
    final = (await gw.wait(failed.id))[-1]
    assert final.analysis.state == FAILED
    assert "facets service unavailable" in final.analysis.error.message
    assert final.analysis.error.code == code_pb2.UNAVAILABLE
    assert metric_value("briefxai_circuit_breaker_state", {"service": "gateway", "breaker": "facets"}) == 1.0
    assert (
        metric_value("briefxai_errors_total", {"service": "gateway", "kind": "downstream"})
        > downstream_errors
    )
    # The breaker now refuses at once, without calling the stopped service.
    fast = await create(gw, conversations(6))
    final = (await gw.wait(fast.id))[-1]
    assert final.analysis.state == FAILED
    assert "circuit breaker open" in final.analysis.error.message
    assert final.analysis.error.code == code_pb2.UNAVAILABLE
    # The gateway itself keeps serving.
    listed = await gw.stub.ListAnalyses(gateway_pb2.ListAnalysesRequest())
    assert [a.id for a in listed.analyses] == [fast.id, failed.id, ok.id]
    health = json.loads(await asyncio.to_thread(http_get, gw.running.http_port, "/health"))
    assert health["downstream"]["facets"]["circuit_breaker"]["state"] == "open"
    assert health["status"] == "degraded" and health["circuit_breakers"]["facets"] == "open"
    assert health["downstream"]["embedding"]["circuit_breaker"]["state"] == "closed"
    text = (await asyncio.to_thread(http_get, gw.running.http_port, "/metrics")).decode()
    assert 'briefxai_circuit_breaker_state{breaker="facets",service="gateway"} 1.0' in text
    assert "briefxai_analyses_total" in text and "briefxai_stage_seconds_bucket" in text


async def test_metrics_count_stages_and_states(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway()
    before = {
        stage: metric_value("briefxai_conversations_processed_total", {"stage": stage.value})
        for stage in (Stage.FACETS, Stage.EMBED, Stage.CLUSTER, Stage.STORE)
    }
    succeeded = metric_value("briefxai_analyses_total", {"state": "succeeded"})
    analysis = await create(gw, conversations(12))
    assert (await gw.wait(analysis.id))[-1].analysis.state == SUCCEEDED
    for stage, value in before.items():
        assert metric_value("briefxai_conversations_processed_total", {"stage": stage.value}) == value + 12
    assert metric_value("briefxai_analyses_total", {"state": "succeeded"}) == succeeded + 1
    assert metric_value("briefxai_stage_seconds_count", {"stage": "facets"}) >= 2


async def test_the_token_budget_reaches_the_model(start_gateway: GatewayFactory) -> None:
    """Each conversation is embedded as at most ``embed_token_budget`` model tokens ([CLS]/[SEP] included)."""
    long_turn = " ".join(f"word{i} about shipping delays and refunds" for i in range(40))
    convs = [
        common_pb2.Conversation(
            id=f"long-{index}",
            user_id=f"user-{index % 4}",
            messages=[
                common_pb2.Message(role=common_pb2.ROLE_USER, content=f"Case {index}-budget: {long_turn}"),
                common_pb2.Message(role=common_pb2.ROLE_ASSISTANT, content=long_turn),
            ],
        )
        for index in range(12)
    ]
    gw = await start_gateway()
    labels = {"backend": "onnx"}
    tokens_before = metric_value("briefxai_embedding_tokens_total", labels)
    created = await create(gw, convs, k=2, seed=3, embed_token_budget=16)
    assert created.options.embed_token_budget == 16
    assert (await gw.wait(created.id))[-1].analysis.state == SUCCEEDED
    assert metric_value("briefxai_embedding_tokens_total", labels) - tokens_before == 12 * 16

    default = await create(gw, conversations(6), k=2, seed=3)
    assert default.options.embed_token_budget == gw.settings.defaults.embed_token_budget == 64
