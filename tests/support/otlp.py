"""A real OTLP trace receiver for tests, on the test's event loop: OTLP/gRPC (the ``TraceService`` of
``opentelemetry-proto``, on a ``grpc.aio`` server) and OTLP/HTTP (``POST /v1/traces``, protobuf, on
``aiohttp``), both on 127.0.0.1, with TLS when given a key and certificate.

Every span received is kept as a flat :class:`ReceivedSpan` (ids in hex, attributes as Python values,
the ``service.name`` of its resource). ``await receiver.wait_for(predicate)`` waits, bounded, until the
spans received satisfy ``predicate``.
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
import subprocess
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import grpc
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2

SPAN_KIND_INTERNAL = 1
SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind: 1 internal, 2 server, 3 client
    attributes: dict[str, Any]
    links: tuple[tuple[str, str, dict[str, Any]], ...]  # (trace_id, span_id, attributes)
    status_code: int  # 0 unset, 1 ok, 2 error
    protocol: str  # "grpc" or "http"


def any_value(value: common_pb2.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def attributes(pairs: Sequence[common_pb2.KeyValue]) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in pairs}


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self.receiver = receiver

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.receiver.add(request, "grpc")
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    """``async with OtlpReceiver() as receiver``: ``grpc_endpoint`` and ``http_endpoint`` are base URLs
    (``http://127.0.0.1:<port>``, ``https://`` with TLS) to give an exporter."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self.tls = tls  # (private key file, certificate file)
        self.spans: list[ReceivedSpan] = []
        self.exports = {"grpc": 0, "http": 0}
        self._server: grpc.aio.Server | None = None
        self._runner: web.AppRunner | None = None
        self.grpc_port = 0
        self.http_port = 0

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def grpc_endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.http_port}"

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest, protocol: str) -> None:
        self.exports[protocol] += 1
        for resource_spans in request.resource_spans:
            resource = attributes(resource_spans.resource.attributes)
            service = str(resource.get("service.name", ""))
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        ReceivedSpan(
                            service=service,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=int(span.kind),
                            attributes=attributes(span.attributes),
                            links=tuple(
                                (link.trace_id.hex(), link.span_id.hex(), attributes(link.attributes))
                                for link in span.links
                            ),
                            status_code=int(span.status.code),
                            protocol=protocol,
                        )
                    )

    async def _http_export(self, request: web.Request) -> web.Response:
        body = await request.read()
        encoding = request.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        self.add(trace_service_pb2.ExportTraceServiceRequest.FromString(body), "http")
        return web.Response(
            body=trace_service_pb2.ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    async def start(self) -> Self:
        self._server = grpc.aio.server()
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), self._server)
        if self.tls:
            key, cert = self.tls
            credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
            self.grpc_port = self._server.add_secure_port("127.0.0.1:0", credentials)
        else:
            self.grpc_port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        app = web.Application()
        app.router.add_post("/v1/traces", self._http_export)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        context = None
        if self.tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.tls[1], self.tls[0])
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        self.http_port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)
            self._server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for(
        self, predicate: Callable[[list[ReceivedSpan]], bool], limit: float = 60.0
    ) -> list[ReceivedSpan]:
        """The spans received, once ``predicate(spans)`` holds; AssertionError after ``limit`` s."""
        deadline = time.monotonic() + limit
        while not predicate(list(self.spans)):
            if time.monotonic() > deadline:
                names = sorted({(s.service, s.name) for s in self.spans})
                raise AssertionError(f"spans not received within {limit:g}s; received: {names}")
            await asyncio.sleep(0.1)
        return list(self.spans)


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """(key, certificate) files of a self-signed certificate for localhost and 127.0.0.1, made by the
    ``openssl`` command; FileNotFoundError when it is absent."""
    key, cert = folder / "collector.key", folder / "collector.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return key, cert
