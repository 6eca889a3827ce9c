"""Tracing: trace context and the request/analysis ids cross a hop; where spans are exported (the
settings and the standard OTEL_* variables); export to a real OTLP receiver over gRPC and HTTP, with TLS."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from briefxai.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from briefxai_common import tracing
from briefxai_common.bootstrap import start_service
from briefxai_common.channels import create_channel
from tests.common.test_bootstrap import build
from tests.support.otlp import OtlpReceiver, self_signed_certificate


async def test_a_hop_carries_the_trace_and_the_ids(span_exporter: InMemorySpanExporter) -> None:
    """A call made through create_channel joins the caller's trace and sends the ids bound in the
    caller's log context as x-request-id and x-analysis-id; the server binds them (seen on its span),
    and makes up a request id when none came."""
    running = await start_service(build())
    try:
        channel = create_channel(running.address)
        stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        with (
            trace.get_tracer("tests").start_as_current_span("caller") as caller,
            structlog.contextvars.bound_contextvars(request_id="req-42", analysis_id="an-7"),
        ):
            await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["0"]))
        await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["1"]))
        await channel.close()
    finally:
        await running.stop(grace=0)
    served = [
        span
        for span in span_exporter.get_finished_spans()
        if span.kind == trace.SpanKind.SERVER and span.name.endswith("EmbedTexts")
    ]
    assert len(served) == 2, [span.name for span in span_exporter.get_finished_spans()]
    with_ids, without = served
    assert with_ids.context.trace_id == caller.get_span_context().trace_id
    assert with_ids.attributes is not None and without.attributes is not None
    assert with_ids.attributes[tracing.REQUEST_ID] == "req-42"
    assert with_ids.attributes[tracing.ANALYSIS_ID] == "an-7"
    assert without.attributes[tracing.REQUEST_ID] not in ("", "req-42")
    assert tracing.ANALYSIS_ID not in without.attributes


# -- what is exported, and where --------------------------------------------------------------------

OTLP = "OTEL_EXPORTER_OTLP_"
Plan = tracing.ExportPlan
# id: (environment, otlp_endpoint setting, plan expected)
PLANS: dict[str, tuple[dict[str, str], str, tracing.ExportPlan | None]] = {
    "nothing configured": ({}, "", None),
    "one variable": ({OTLP + "ENDPOINT": "http://c:4317"}, "", Plan("grpc", "c:4317", tls=False)),
    "the setting overrides": (
        {OTLP + "ENDPOINT": "http://c:4317"},
        "http://o:4317",
        Plan("grpc", "o:4317", tls=False),
    ),
    "traces endpoint first": (
        {OTLP + "ENDPOINT": "http://c:4317", OTLP + "TRACES_ENDPOINT": "http://t:4317"},
        "",
        Plan("grpc", "t:4317", tls=False),
    ),
    "http appends the traces path": (
        {OTLP + "ENDPOINT": "http://c:4318", OTLP + "PROTOCOL": "http/protobuf"},
        "",
        Plan("http/protobuf", "http://c:4318/v1/traces", tls=False),
    ),
    "http traces endpoint as is": (
        {
            OTLP + "TRACES_ENDPOINT": "http://c:4318/x",
            OTLP + "TRACES_PROTOCOL": "http/protobuf",
            OTLP + "PROTOCOL": "grpc",
        },
        "",
        Plan("http/protobuf", "http://c:4318/x", tls=False),
    ),
    "http path not doubled": (
        {OTLP + "PROTOCOL": "http/protobuf"},
        "c:4318/v1/traces",
        Plan("http/protobuf", "http://c:4318/v1/traces", tls=False),
    ),
    "https is tls": ({OTLP + "ENDPOINT": "https://c:4317"}, "", Plan("grpc", "c:4317", tls=True)),
    "a certificate asks for tls": (
        {OTLP + "CERTIFICATE": "/ca.pem", OTLP + "CLIENT_KEY": "/client.key"},
        "c:4317",
        Plan("grpc", "c:4317", tls=True, certificate="/ca.pem", client_key="/client.key"),
    ),
    "http is plaintext": (
        {OTLP + "ENDPOINT": "http://c:4317", OTLP + "CERTIFICATE": "/ca.pem"},
        "",
        Plan("grpc", "c:4317", tls=False),
    ),
    "insecure false is tls": (
        {OTLP + "ENDPOINT": "c:4317", OTLP + "INSECURE": "false"},
        "",
        Plan("grpc", "c:4317", tls=True),
    ),
    "exporter none": ({OTLP + "ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "none"}, "", None),
    "sdk disabled": ({OTLP + "ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "true"}, "", None),
    "exporter otlp without endpoint": (
        {"OTEL_TRACES_EXPORTER": "otlp", OTLP + "PROTOCOL": "http/protobuf"},
        "",
        Plan("http/protobuf", "http://localhost:4318/v1/traces", tls=False),
    ),
}


@pytest.mark.parametrize(("environ", "setting", "expected"), list(PLANS.values()), ids=list(PLANS))
def test_export_plan(environ: dict[str, str], setting: str, expected: tracing.ExportPlan | None) -> None:
    assert tracing.export_plan(setting, environ=environ) == expected


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "zipkin"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://c:4317"},
    ],
)
def test_export_plan_refuses_what_it_cannot_do(environ: dict[str, str]) -> None:
    with pytest.raises(tracing.TracingConfigError):
        tracing.export_plan(environ=environ)


def test_the_certificate_setting_overrides_the_variable() -> None:
    plan = tracing.export_plan(
        "collector:4317", "/mine.pem", environ={"OTEL_EXPORTER_OTLP_CERTIFICATE": "/theirs.pem"}
    )
    assert plan == tracing.ExportPlan("grpc", "collector:4317", tls=True, certificate="/mine.pem")


def test_a_missing_certificate_file_is_a_configuration_error(tmp_path: Path) -> None:
    plan = tracing.ExportPlan("grpc", "collector:4317", tls=True, certificate=str(tmp_path / "absent.pem"))
    with pytest.raises(tracing.TracingConfigError, match=r"absent\.pem"):
        tracing.build_exporter(plan)


def test_resource_defaults_and_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert tracing.service_resource("facets").attributes["service.name"] == "briefxai-facets"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging,service.name=x")
    resource = tracing.service_resource("facets")
    assert resource.attributes["deployment.environment.name"] == "staging"
    assert resource.attributes["service.name"] == "x"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "facets-eu")
    assert tracing.service_resource("facets").attributes["service.name"] == "facets-eu"


# -- exporting to a real receiver ---------------------------------------------------------------------


def _finished_spans(service: str) -> list[ReadableSpan]:
    """Two spans (a parent and its child) made by a provider of their own."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=tracing.service_resource(service))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("parent"), tracer.start_as_current_span("child"):
        pass
    provider.shutdown()
    return list(memory.get_finished_spans())


async def _export(receiver: OtlpReceiver, plan: tracing.ExportPlan | None, service: str) -> None:
    assert plan is not None
    exporter = tracing.build_exporter(plan)
    try:
        # The exporters block: they run in a thread while the receiver answers on this loop.
        result = await asyncio.to_thread(exporter.export, _finished_spans(service))
    finally:
        await asyncio.to_thread(exporter.shutdown)
    assert result == SpanExportResult.SUCCESS
    name = f"briefxai-{service}"
    spans = await receiver.wait_for(lambda spans: sum(s.service == name for s in spans) == 2)
    parent, child = (next(s for s in spans if s.service == name and s.name == n) for n in ("parent", "child"))
    assert child.parent_span_id == parent.span_id and child.trace_id == parent.trace_id


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
async def test_spans_reach_a_real_receiver(protocol: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    async with OtlpReceiver() as receiver:
        endpoint = receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint
        environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol}
        await _export(receiver, tracing.export_plan(environ=environ), f"plain-{protocol}")
        assert receiver.exports["grpc" if protocol == "grpc" else "http"] == 1


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
async def test_spans_reach_a_receiver_over_tls(
    protocol: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TLS with the collector's CA given by the setting (the endpoint has no scheme) or by
    OTEL_EXPORTER_OTLP_CERTIFICATE (an https:// endpoint)."""
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a certificate with")
    key, cert = self_signed_certificate(tmp_path)
    async with OtlpReceiver(tls=(key, cert)) as receiver:
        port = receiver.grpc_port if protocol == "grpc" else receiver.http_port
        by_setting = tracing.export_plan(
            f"localhost:{port}", str(cert), environ={"OTEL_EXPORTER_OTLP_PROTOCOL": protocol}
        )
        assert by_setting is not None and by_setting.tls
        await _export(receiver, by_setting, f"tls-setting-{protocol}")
        by_variable = tracing.export_plan(
            environ={
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"https://localhost:{port}",
                "OTEL_EXPORTER_OTLP_CERTIFICATE": str(cert),
                "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            }
        )
        await _export(receiver, by_variable, f"tls-variable-{protocol}")
