"""Trace context crosses a hop: the server span of a call made through create_channel joins the caller's trace."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from briefxai.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from briefxai_common import tracing
from briefxai_common.bootstrap import start_service
from briefxai_common.channels import create_channel
from tests.common.test_bootstrap import build


async def test_server_span_joins_the_callers_trace() -> None:
    exporter = InMemorySpanExporter()
    tracing.configure_tracing("tracing-test", extra_processor=SimpleSpanProcessor(exporter))
    running = await start_service(build())
    try:
        channel = create_channel(running.address)
        tracer = trace.get_tracer("tests")
        with tracer.start_as_current_span("caller") as caller:
            await embedding_pb2_grpc.EmbeddingServiceStub(channel).EmbedTexts(
                embedding_pb2.EmbedTextsRequest(texts=["0"])
            )
        await channel.close()
    finally:
        await running.stop(grace=0)
    trace_id = caller.get_span_context().trace_id
    server_spans = [
        span
        for span in exporter.get_finished_spans()
        if span.kind == trace.SpanKind.SERVER and span.name.endswith("EmbedTexts")
    ]
    assert server_spans, [span.name for span in exporter.get_finished_spans()]
    assert all(span.context.trace_id == trace_id for span in server_spans)
