"""One trace per analysis, in process (the e2e test checks the same across four processes over OTLP):
a root span of its own linked to the creating call, stage spans under it, downstream client spans under
the stages and the downstream servers' spans under those, which also carry the request and analysis ids;
an analysis resumed at startup gets a root span of its own too."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from briefxai.gateway.v1 import gateway_pb2
from briefxai_common import tracing
from briefxai_gateway.convert import conversations_from_pb
from briefxai_gateway.models import AnalysisOptions
from briefxai_gateway.store import Store

from .conftest import GatewayFactory, conversations

pytestmark = pytest.mark.asyncio(loop_scope="session")

STAGES = {"validate", "facets", "embed", "cluster", "store"}
STAGE_OF_METHOD = {
    "/briefxai.facets.v1.FacetsService/ExtractFacets": "facets",
    "/briefxai.embedding.v1.EmbeddingService/EmbedTexts": "embed",
    "/briefxai.clustering.v1.ClusteringService/StreamClusterEmbeddings": "cluster",
}


def attribute(span: ReadableSpan, key: str) -> Any:
    return (span.attributes or {}).get(key)


async def root_of(span_exporter: InMemorySpanExporter, analysis_id: str, limit: float = 30.0) -> ReadableSpan:
    """The ended ``analysis`` span of ``analysis_id`` (it ends just after the analysis is stored)."""
    deadline = time.monotonic() + limit
    while True:
        roots = [
            s
            for s in span_exporter.get_finished_spans()
            if s.name == "analysis" and attribute(s, tracing.ANALYSIS_ID) == analysis_id
        ]
        if roots:
            return roots[-1]
        assert time.monotonic() < deadline, f"no analysis span for {analysis_id}"
        await asyncio.sleep(0.05)


def in_trace(span_exporter: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    return [s for s in span_exporter.get_finished_spans() if s.context.trace_id == trace_id]


async def test_an_analysis_is_one_trace_linked_to_its_creation(
    start_gateway: GatewayFactory, span_exporter: InMemorySpanExporter
) -> None:
    gw = await start_gateway(batch_size=4)
    request = gateway_pb2.CreateAnalysisRequest(
        conversations=conversations(10), options=gateway_pb2.AnalysisOptions(k=3)
    )
    created = (await gw.stub.CreateAnalysis(request, metadata=(("x-request-id", "create-1"),))).analysis
    final = (await gw.wait(created.id))[-1]
    assert final.analysis.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, final.analysis.error.message
    root = await root_of(span_exporter, created.id)

    # The creating call: its server span, and the limits it asked for with its request id.
    (create,) = [
        s
        for s in span_exporter.get_finished_spans()
        if s.kind == trace.SpanKind.SERVER
        and s.name.endswith("/CreateAnalysis")
        and attribute(s, tracing.REQUEST_ID) == "create-1"
    ]
    asked = [
        s
        for s in in_trace(span_exporter, create.context.trace_id)
        if s.kind == trace.SpanKind.SERVER and s.name.endswith("/GetLimits")
    ]
    assert asked and all(attribute(s, tracing.REQUEST_ID) == "create-1" for s in asked)

    # The analysis: a new trace, linked to the creating call.
    assert root.parent is None
    assert root.context.trace_id != create.context.trace_id
    assert [link.context.span_id for link in root.links] == [create.context.span_id]
    assert attribute(root, "briefxai.analysis.resumed") is False
    assert attribute(root, "briefxai.analysis.state") == "succeeded"

    spans = in_trace(span_exporter, root.context.trace_id)
    by_id = {s.context.span_id: s for s in spans}
    assert all(s.parent is None or s.parent.span_id in by_id for s in spans), "a parent is missing"
    stages = [s for s in spans if s.name in STAGES]
    assert {s.name for s in stages} == STAGES
    assert all(s.parent is not None and s.parent.span_id == root.context.span_id for s in stages)
    batches = sorted(attribute(s, tracing.BATCH_INDEX) for s in stages if s.name == "facets")
    assert batches == [0, 1, 2]
    assert sorted(attribute(s, tracing.BATCH_SIZE) for s in stages if s.name == "embed") == [2, 4, 4]

    clients = [s for s in spans if s.kind == trace.SpanKind.CLIENT and s.name in STAGE_OF_METHOD]
    assert {s.name for s in clients} == set(STAGE_OF_METHOD)
    for client in clients:
        assert client.parent is not None
        assert by_id[client.parent.span_id].name == STAGE_OF_METHOD[client.name]
    servers = [s for s in spans if s.kind == trace.SpanKind.SERVER]
    assert {s.name for s in servers} >= set(STAGE_OF_METHOD)
    for server in servers:
        assert server.parent is not None
        caller = by_id[server.parent.span_id]
        assert caller.kind == trace.SpanKind.CLIENT and caller.name == server.name
        assert attribute(server, tracing.ANALYSIS_ID) == created.id
        assert attribute(server, tracing.REQUEST_ID) == created.id

    saved = [s for s in spans if s.name == "store.save_results"]
    assert len(saved) == 1 and saved[0].parent is not None
    assert by_id[saved[0].parent.span_id].name == "store"
    assert attribute(saved[0], "db.system.name") == "sqlite"


async def test_a_resumed_analysis_gets_a_root_span_of_its_own(
    start_gateway: GatewayFactory, span_exporter: InMemorySpanExporter, tmp_path: object
) -> None:
    store_url = f"sqlite:///{tmp_path}/resumed.db"
    store = Store(store_url)
    try:
        store.migrate()
        store.create_analysis(
            "left-pending",
            request_id="",
            options=AnalysisOptions(),
            batch_size=8,
            conversations=conversations_from_pb(conversations(6)),
        )
    finally:
        store.close()
    gw = await start_gateway(store_url=store_url)
    final = (await gw.wait("left-pending"))[-1]
    assert final.analysis.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, final.analysis.error.message
    root = await root_of(span_exporter, "left-pending")
    assert root.parent is None and not root.links
    assert attribute(root, "briefxai.analysis.resumed") is True
    stages = {s.name for s in in_trace(span_exporter, root.context.trace_id) if s.name in STAGES}
    assert stages == STAGES
