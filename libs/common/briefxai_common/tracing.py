"""OpenTelemetry: a tracer provider per process, OTLP export (gRPC or HTTP, TLS when configured), aio
interceptors, and the helpers services use for their own spans.

What a process exports is set by the standard ``OTEL_*`` variables, so that one set of variables
configures all four services (the ``otlp_endpoint`` and ``otlp_certificate`` settings override them):

- where: ``otlp_endpoint``, else ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (used as is), else
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` (OTLP/HTTP appends ``/v1/traces``). No endpoint: no export, unless
  ``OTEL_TRACES_EXPORTER=otlp`` asks for the default one (``localhost:4317``, or ``:4318`` over HTTP);
  ``OTEL_TRACES_EXPORTER=none`` turns export off, ``OTEL_SDK_DISABLED=true`` the whole SDK.
- how: ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_PROTOCOL``: ``grpc`` (the default,
  as with the Python distro's ``otlp`` exporter) or ``http/protobuf``.
- TLS: an ``https://`` endpoint, or a certificate (``otlp_certificate``, else
  ``OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`` / ``OTEL_EXPORTER_OTLP_CERTIFICATE``: the CA bundle that
  signs the collector's certificate) with an endpoint without a scheme, or ``OTEL_EXPORTER_OTLP_INSECURE=false``
  with an endpoint without a scheme. ``http://`` is always plaintext. Client certificates (mTLS):
  ``OTEL_EXPORTER_OTLP_CLIENT_KEY`` and ``OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`` (or their ``TRACES_`` forms).
- what: ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` override the resource (by default
  ``service.name=briefxai-<service>``); ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` choose the
  sampler (default ``parentbased_always_on``); ``OTEL_BSP_*`` tune the batch processor and
  ``OTEL_EXPORTER_OTLP_HEADERS`` / ``_TIMEOUT`` / ``_COMPRESSION`` the exporter; ``OTEL_PROPAGATORS``
  the propagation format (W3C trace context and baggage by default).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor, filters
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.util.types import AttributeValue

from briefxai_common.logging import get_logger

log = get_logger(__name__)

# Attributes our own spans carry (OpenTelemetry semantic conventions where one exists).
ANALYSIS_ID = "briefxai.analysis.id"
REQUEST_ID = "briefxai.request.id"
STAGE = "briefxai.stage"
BATCH_INDEX = "briefxai.batch.index"
BATCH_SIZE = "briefxai.batch.size"
LINK_ORIGIN = "briefxai.link"

Protocol = Literal["grpc", "http/protobuf"]
PROTOCOLS: tuple[str, ...] = ("grpc", "http/protobuf")
DEFAULT_ENDPOINTS: dict[str, str] = {
    "grpc": "http://localhost:4317",
    "http/protobuf": "http://localhost:4318",
}
HTTP_TRACES_PATH = "/v1/traces"

_provider: TracerProvider | None = None


class TracingConfigError(ValueError):
    """The ``OTEL_*`` variables or tracing settings ask for something that cannot be done."""


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """Where and how spans are exported, resolved from the settings and the ``OTEL_*`` variables.

    ``endpoint`` is what the exporter is given: for gRPC a ``host:port`` target, for HTTP the full URL
    of the traces path.
    """

    protocol: Protocol
    endpoint: str
    tls: bool
    certificate: str = ""
    client_key: str = ""
    client_certificate: str = ""


def _first(env: Mapping[str, str], *names: str) -> str:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return ""


def export_plan(
    otlp_endpoint: str = "", certificate: str = "", environ: Mapping[str, str] | None = None
) -> ExportPlan | None:
    """The export this process should do, or None for none. Raises TracingConfigError on values that
    make no sense (an unknown protocol)."""
    env = os.environ if environ is None else environ
    exporters = {
        name.strip().lower() for name in _first(env, "OTEL_TRACES_EXPORTER").split(",") if name.strip()
    }
    if "none" in exporters or _first(env, "OTEL_SDK_DISABLED").lower() == "true":
        return None
    if exporters and "otlp" not in exporters:
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER={','.join(sorted(exporters))}: only otlp and none are supported"
        )
    protocol = (
        _first(env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
    ).lower()
    if protocol not in PROTOCOLS:
        raise TracingConfigError(
            f"OTLP protocol {protocol!r} is not supported; use one of {', '.join(PROTOCOLS)}"
        )
    endpoint, is_base = otlp_endpoint.strip(), True
    if not endpoint:
        endpoint, is_base = _first(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), False
    if not endpoint:
        endpoint, is_base = _first(env, "OTEL_EXPORTER_OTLP_ENDPOINT"), True
    if not endpoint:
        if "otlp" not in exporters:
            return None
        endpoint, is_base = DEFAULT_ENDPOINTS[protocol], True
    certificate = certificate.strip() or _first(
        env, "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"
    )
    scheme = urlsplit(endpoint).scheme.lower() if "://" in endpoint else ""
    if scheme not in ("", "http", "https"):
        raise TracingConfigError(f"OTLP endpoint {endpoint!r}: the scheme must be http or https")
    insecure = _first(env, "OTEL_EXPORTER_OTLP_TRACES_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE").lower()
    tls = scheme == "https" or (scheme == "" and (bool(certificate) or insecure == "false"))
    if protocol == "grpc":
        target = urlsplit(endpoint).netloc if scheme else endpoint
    else:
        url = endpoint if scheme else ("https://" if tls else "http://") + endpoint
        if is_base and not url.rstrip("/").endswith(HTTP_TRACES_PATH):
            url = url.rstrip("/") + HTTP_TRACES_PATH
        target = url
    return ExportPlan(
        protocol="grpc" if protocol == "grpc" else "http/protobuf",
        endpoint=target,
        tls=tls,
        certificate=certificate if tls else "",
        client_key=_first(env, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY"),
        client_certificate=_first(
            env, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"
        ),
    )


def _read(path: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TracingConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc


def build_exporter(plan: ExportPlan) -> SpanExporter:
    """The OTLP span exporter of ``plan`` (headers, timeout and compression from ``OTEL_*``)."""
    if plan.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        credentials = None
        if plan.tls:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(plan.certificate),
                private_key=_read(plan.client_key),
                certificate_chain=_read(plan.client_certificate),
            )
        return OTLPSpanExporter(endpoint=plan.endpoint, insecure=not plan.tls, credentials=credentials)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

    for path in (plan.certificate, plan.client_key, plan.client_certificate):
        _read(path)  # a missing file is a configuration error now, not a failed export later
    return HttpSpanExporter(
        endpoint=plan.endpoint,
        certificate_file=plan.certificate or None,
        client_key_file=plan.client_key or None,
        client_certificate_file=plan.client_certificate or None,
        session=_own_ca_session() if plan.certificate else None,
    )


def _own_ca_session() -> Any:
    """A requests session whose CA file is not overridden by ``REQUESTS_CA_BUNDLE`` /
    ``CURL_CA_BUNDLE`` (requests lets those win over a session's ``verify``, psf/requests#3829)."""
    import requests

    class OwnCASession(requests.Session):  # type: ignore[misc]
        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> Any:
            settings = super().merge_environment_settings(*args, **kwargs)
            if isinstance(self.verify, str):
                settings["verify"] = self.verify
            return settings

    return OwnCASession()


def service_resource(service: str) -> Resource:
    """``service.name=briefxai-<service>`` and the version; ``OTEL_SERVICE_NAME`` and
    ``OTEL_RESOURCE_ATTRIBUTES`` win over both."""
    try:
        version = metadata.version("briefxai-common")
    except metadata.PackageNotFoundError:
        version = "0"
    ours = Resource.create({"service.name": f"briefxai-{service}", "service.version": version})
    return ours.merge(OTELResourceDetector().detect())


def configure_tracing(
    service: str,
    otlp_endpoint: str = "",
    extra_processor: SpanProcessor | None = None,
    *,
    certificate: str = "",
) -> None:
    """Installs the global tracer provider once and exports as :func:`export_plan` says. A bad
    configuration is logged and leaves export off: the service itself still runs."""
    global _provider
    if _provider is not None:
        if extra_processor is not None:
            _provider.add_span_processor(extra_processor)
        return
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return
    provider = TracerProvider(resource=service_resource(service))  # the sampler from OTEL_TRACES_SAMPLER
    try:
        plan = export_plan(otlp_endpoint, certificate)
        if plan is not None:
            provider.add_span_processor(BatchSpanProcessor(build_exporter(plan)))
            log.info("trace_export", protocol=plan.protocol, endpoint=plan.endpoint, tls=plan.tls)
    except TracingConfigError as error:
        log.error("trace_export_disabled", error=str(error))
    if extra_processor is not None:
        provider.add_span_processor(extra_processor)
    trace.set_tracer_provider(provider)
    _provider = provider


def shutdown_tracing() -> None:
    """Flushes pending spans."""
    if _provider is not None:
        _provider.shutdown()


# -- spans of our own --------------------------------------------------------------------------------


def current_span_context() -> trace.SpanContext | None:
    """The context of the current span, to link to later; None when there is none."""
    context = trace.get_current_span().get_span_context()
    return context if context.is_valid else None


@contextmanager
def job_span(
    tracer: trace.Tracer,
    name: str,
    *,
    link_to: trace.SpanContext | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Iterator[trace.Span]:
    """The root span of a new trace for work that outlives the call that started it, linked to that
    call's span (``link_to``), current until the block ends."""
    links = [trace.Link(link_to, {LINK_ORIGIN: "created_by"})] if link_to is not None else []
    with tracer.start_as_current_span(
        name, context=otel_context.Context(), links=links, attributes=attributes
    ) as span:
        yield span


# -- gRPC --------------------------------------------------------------------------------------------

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
