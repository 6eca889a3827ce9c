"""One trace per analysis across the four services as real processes, exported over OTLP/gRPC to a real
receiver in this process, configured by one standard variable (``OTEL_EXPORTER_OTLP_ENDPOINT``).

The facets service asks the scripted OpenAI-compatible server first (then the heuristic), so the LLM
HTTP calls are in the trace too. Expected tree::

    gateway   CreateAnalysis (server)  <-link-  analysis (root of a new trace)
                                                 +- validate, facets[b], embed[b], cluster, store (stages)
                                                 |   +- /...Service/Method (client)
                                                 |       +- /...Service/Method (server, in facets/embedding/clustering)
                                                 |           +- chat fake-model (client, facets: the LLM call)
                                                 +- store.<operation>
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import pytest

import briefxai_sampledata as sampledata
from briefxai.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from briefxai_cli.supervisor import Suite, plan_suite
from briefxai_common import tracing
from briefxai_common.conversations import Conversation, Message
from briefxai_common.conversations_proto import conversation_to_proto
from tests.support.fake_openai import FakeOpenAI
from tests.support.otlp import SPAN_KIND_CLIENT, SPAN_KIND_SERVER, OtlpReceiver, ReceivedSpan

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

START_TIMEOUT = 600.0
SERVICES = {"briefxai-gateway", "briefxai-facets", "briefxai-embedding", "briefxai-clustering"}
STAGES = {"validate", "facets", "embed", "cluster", "store"}
STAGE_OF_METHOD = {
    "/briefxai.facets.v1.FacetsService/ExtractFacets": "facets",
    "/briefxai.embedding.v1.EmbeddingService/EmbedTexts": "embed",
    "/briefxai.clustering.v1.ClusteringService/StreamClusterEmbeddings": "cluster",
}
# Variables of the test's own environment that would change what the services export.
OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_EXPORTER",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_INSECURE",
)


def _answer(name: str, schema: dict[str, Any]) -> Any:
    if schema.get("type") == "object":
        return {"value": _answer(name, schema["properties"]["value"]), "reason": "It says so."}
    if "enum" in schema:
        return schema["enum"][0]
    if schema.get("type") == "number":
        return schema.get("minimum", 0)
    return "en" if name == "language" else "help with an everyday question"


def answer_facets(request: dict[str, Any]) -> str:
    """A valid reply to the facets prompt: the first choice, the lowest number, a short text."""
    schema = request["response_format"]["json_schema"]["schema"]
    return json.dumps({name: _answer(name, prop) for name, prop in schema["properties"].items()})


def conversations(count: int) -> list[Any]:
    return [
        conversation_to_proto(
            Conversation(
                id=c["id"],
                user_id=c["user_id"],
                messages=[Message(m["role"], m["content"]) for m in c["messages"]],
                metadata=c["metadata"],
            )
        )
        for c in sampledata.generate(count, 5)
    ]


def analysis_trace_ready(analysis_id: str) -> Any:
    def ready(spans: list[ReceivedSpan]) -> bool:
        roots = [
            s for s in spans if s.name == "analysis" and s.attributes.get(tracing.ANALYSIS_ID) == analysis_id
        ]
        if not roots:
            return False
        in_trace = [s for s in spans if s.trace_id == roots[0].trace_id]
        return {s.service for s in in_trace} == SERVICES and any(s.name.startswith("chat ") for s in in_trace)

    return ready


async def test_an_analysis_is_one_trace_across_four_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    async with OtlpReceiver() as receiver, FakeOpenAI(chat_default=answer_facets) as llm:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.grpc_endpoint,  # the one variable, for all four
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "BRIEFXAI_FACETS_PROVIDERS": '["openai", "heuristic"]',
            "BRIEFXAI_FACETS_OPENAI__BASE_URL": llm.base_url,
            "BRIEFXAI_FACETS_OPENAI__MODEL": "fake-model",
            "BRIEFXAI_FACETS_OPENAI__API_KEY_ENV": "BRIEFXAI_TRACING_TEST_NO_KEY",
            "BRIEFXAI_FACETS_OPENAI__MAX_ATTEMPTS": "1",
        }
        suite = Suite(plan_suite(tmp_path / "suite", base_port=0), extra_env=env)
        await asyncio.to_thread(suite.start, START_TIMEOUT)
        try:
            async with grpc.aio.insecure_channel(suite.gateway_address) as channel:
                stub = gateway_pb2_grpc.AnalysisServiceStub(channel)
                request = gateway_pb2.CreateAnalysisRequest(
                    conversations=conversations(12), options=gateway_pb2.AnalysisOptions(seed=1)
                )
                bearer = ("authorization", f"Bearer {suite.admin_key}")
                created = (
                    await stub.CreateAnalysis(
                        request, metadata=(("x-request-id", "e2e-create"), bearer), timeout=60
                    )
                ).analysis
                final = None
                async for update in stub.WatchAnalysis(
                    gateway_pb2.WatchAnalysisRequest(id=created.id), metadata=(bearer,), timeout=600
                ):
                    final = update.analysis
            assert final is not None and final.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, final
            spans = await receiver.wait_for(analysis_trace_ready(created.id), limit=120)
        finally:
            codes = await asyncio.to_thread(suite.stop)
        assert codes == {name: 0 for name in codes}, f"services did not stop cleanly: {codes}"
    assert receiver.exports["grpc"] > 0

    (root,) = [
        s for s in spans if s.name == "analysis" and s.attributes.get(tracing.ANALYSIS_ID) == created.id
    ]
    trace = [s for s in spans if s.trace_id == root.trace_id]
    by_id = {s.span_id: s for s in trace}
    assert root.service == "briefxai-gateway" and root.parent_span_id == ""
    assert all(s.parent_span_id == "" or s.parent_span_id in by_id for s in trace), "a parent is missing"
    assert {s.service for s in trace} == SERVICES

    # Linked to the span of the call that created it, in the trace of that call.
    (create,) = [
        s
        for s in spans
        if s.kind == SPAN_KIND_SERVER
        and s.name.endswith("/CreateAnalysis")
        and s.attributes.get(tracing.REQUEST_ID) == "e2e-create"
    ]
    assert create.trace_id != root.trace_id
    assert [(t, s) for t, s, _ in root.links] == [(create.trace_id, create.span_id)]

    stages = [s for s in trace if s.service == "briefxai-gateway" and s.name in STAGES]
    assert {s.name for s in stages} == STAGES
    assert all(s.parent_span_id == root.span_id for s in stages)
    assert all(s.attributes.get(tracing.BATCH_SIZE) for s in stages if s.name in ("facets", "embed"))

    clients = [s for s in trace if s.kind == SPAN_KIND_CLIENT and s.name in STAGE_OF_METHOD]
    assert {s.name for s in clients} == set(STAGE_OF_METHOD)
    assert all(by_id[s.parent_span_id].name == STAGE_OF_METHOD[s.name] for s in clients)

    servers = [s for s in trace if s.kind == SPAN_KIND_SERVER]
    assert {s.service for s in servers} == SERVICES - {"briefxai-gateway"}
    for server in servers:
        caller = by_id[server.parent_span_id]
        assert (caller.service, caller.kind, caller.name) == (
            "briefxai-gateway",
            SPAN_KIND_CLIENT,
            server.name,
        )
        assert server.attributes.get(tracing.ANALYSIS_ID) == created.id
        assert server.attributes.get(tracing.REQUEST_ID) == created.id

    llm_calls = [s for s in trace if s.name == "chat fake-model"]
    assert llm_calls and all(s.service == "briefxai-facets" and s.kind == SPAN_KIND_CLIENT for s in llm_calls)
    assert all(by_id[s.parent_span_id].name.endswith("/ExtractFacets") for s in llm_calls)
    assert all(s.attributes.get("gen_ai.usage.input_tokens", 0) > 0 for s in llm_calls)
    assert {s.attributes.get("briefxai.llm.provider") for s in llm_calls} == {"openai:fake-model"}

    stored = [s for s in trace if s.name.startswith("store.")]
    assert {"store.save_facets_batch", "store.save_embeddings_batch", "store.save_results"} <= {
        s.name for s in stored
    }
