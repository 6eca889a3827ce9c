"""OpenTelemetry: a tracer provider per process, OTLP export when an endpoint is set, aio interceptors."""

from __future__ import annotations

from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor, filters
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_provider: TracerProvider | None = None


def configure_tracing(
    service: str, otlp_endpoint: str = "", extra_processor: SpanProcessor | None = None
) -> None:
    """Installs the global tracer provider once; exports over OTLP/gRPC when ``otlp_endpoint`` is set."""
    global _provider
    if _provider is not None:
        if extra_processor is not None:
            _provider.add_span_processor(extra_processor)
        return
    provider = TracerProvider(resource=Resource.create({"service.name": f"briefxai-{service}"}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint, insecure=True))
        )
    if extra_processor is not None:
        provider.add_span_processor(extra_processor)
    trace.set_tracer_provider(provider)
    _provider = provider


def shutdown_tracing() -> None:
    """Flushes pending spans."""
    if _provider is not None:
        _provider.shutdown()


UNTRACED_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)


def server_interceptor() -> grpc.aio.ServerInterceptor:
    """Traces our own services; health and reflection are left out as noise (and because the
    instrumentation expects streaming handlers to be async generators, which health's Watch is not)."""
    untraced = filters.any_of(*(filters.service_name(name) for name in UNTRACED_SERVICES))
    interceptor: grpc.aio.ServerInterceptor = aio_server_interceptor(filter_=filters.negate(untraced))
    return interceptor


def client_interceptors() -> list[Any]:
    return list(aio_client_interceptors())
