"""The LLM HTTP calls are traced: one ``chat <model>`` client span per exchange, under the caller's span,
with the GenAI attributes (provider, models, tokens) and the trace context sent to the LLM server."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from briefxai_common.llm import ChatClient, LLMStatusError
from tests.support.fake_openai import Behaviour, FakeOpenAI

PAYLOAD = {
    "model": "fake-model",
    "messages": [{"role": "user", "content": "hello there"}],
    "max_tokens": 64,
    "temperature": 0.0,
}


def chat_spans(span_exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in span_exporter.get_finished_spans() if s.name.startswith("chat ")]


async def test_an_exchange_is_a_client_span_under_the_callers(
    fake_openai: FakeOpenAI, span_exporter: InMemorySpanExporter
) -> None:
    client = ChatClient(
        fake_openai.base_url, "sk-test-key", timeout_seconds=5, max_connections=2, provider="openai:fake"
    )
    await client.start()
    try:
        with trace.get_tracer("tests").start_as_current_span("ExtractFacets") as caller:
            await client.complete(PAYLOAD)
    finally:
        await client.close()
    (span,) = chat_spans(span_exporter)
    assert span.name == "chat fake-model"
    assert span.kind == trace.SpanKind.CLIENT
    assert span.parent is not None and span.parent.span_id == caller.get_span_context().span_id
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["briefxai.llm.provider"] == "openai:fake"
    assert attributes["gen_ai.request.model"] == attributes["gen_ai.response.model"] == "fake-model"
    assert attributes["gen_ai.request.max_tokens"] == 64
    assert (
        isinstance(attributes["gen_ai.usage.input_tokens"], int)
        and attributes["gen_ai.usage.input_tokens"] > 0
    )
    assert (
        isinstance(attributes["gen_ai.usage.output_tokens"], int)
        and attributes["gen_ai.usage.output_tokens"] > 0
    )
    assert attributes["http.response.status_code"] == 200
    assert attributes["server.address"] == "127.0.0.1" and attributes["server.port"] == fake_openai.port
    assert not any("sk-test-key" in str(value) for value in attributes.values())
    # The LLM server is told the trace: a traceparent naming this span.
    (request,) = fake_openai.requests_to("chat")
    traceparent = {k.lower(): v for k, v in request.headers.items()}["traceparent"]
    context = span.context
    assert context is not None
    assert traceparent.split("-")[1:3] == [format(context.trace_id, "032x"), format(context.span_id, "016x")]


async def test_a_failed_exchange_is_an_error_span(
    fake_openai: FakeOpenAI, span_exporter: InMemorySpanExporter
) -> None:
    fake_openai.script_chat(Behaviour.rate_limited(retry_after=0))
    client = ChatClient(fake_openai.base_url, "", timeout_seconds=5, max_connections=2)
    await client.start()
    try:
        with pytest.raises(LLMStatusError):
            await client.complete(PAYLOAD)
    finally:
        await client.close()
    (span,) = chat_spans(span_exporter)
    assert span.status.status_code == trace.StatusCode.ERROR
    attributes = dict(span.attributes or {})
    assert attributes["http.response.status_code"] == 429
    assert attributes["error.type"] == "429"
    assert attributes["briefxai.llm.provider"] == "openai"
