"""go-grpc-prometheus style metrics on a real grpc.aio server and channel, for all four call kinds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from prometheus_client import CollectorRegistry

from briefxai.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from briefxai_common import metrics
from briefxai_common.metrics import GrpcMetrics, client_interceptors, default_metrics, server_interceptor

SERVICE = "briefxai.test.v1.MetricsTestService"
EMBEDDING = "briefxai.embedding.v1.EmbeddingService"


def _identity(message: bytes) -> bytes:
    return message


class Servicer:
    """Handlers steered by the request bytes; ``entered`` is set once a waiting handler is parked."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.never = asyncio.Event()

    async def unary(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        if request == b"set_code":
            context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
            return b""
        if request == b"abort":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        if request == b"raise":
            raise RuntimeError("boom")
        if request == b"set_code_raise":
            context.set_code(grpc.StatusCode.FAILED_PRECONDITION)
            raise RuntimeError("boom after set_code")
        if request == b"wait":
            self.entered.set()
            await self.never.wait()
        return request.upper()

    async def server_stream(
        self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        count, _, then = request.partition(b":")
        for index in range(int(count)):
            yield str(index).encode()
        if then == b"abort":
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "enough")
        if then == b"wait":
            self.entered.set()
            await self.never.wait()

    async def flood(
        self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        """Endless 1 MB messages: the server ends up blocked in grpc's own write, outside this generator."""
        while True:
            yield b"x" * 1_000_000

    async def client_stream(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> bytes:
        received = [request async for request in requests]
        if b"abort" in received:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "abort requested")
        return b",".join(received)

    async def bidi(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        async for request in requests:
            yield request.upper()

    async def writer(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> None:
        """Server streaming through ``context.write`` (a coroutine, not an async generator)."""
        for index in range(int(request)):
            await context.write(str(index).encode())

    async def reader_writer(self, requests: Any, context: grpc.aio.ServicerContext[bytes, bytes]) -> None:
        """Bidi streaming through ``context.read`` / ``context.write``."""
        while (message := await context.read()) is not grpc.aio.EOF:  # type: ignore[attr-defined]
            await context.write(message.upper())

    def sync_unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        return request.upper()

    def sync_stream(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for request in requests:
            yield request
            yield request


def _handlers(servicer: Servicer) -> grpc.GenericRpcHandler:
    kinds: dict[str, tuple[Callable[..., grpc.RpcMethodHandler], Callable[..., Any]]] = {
        "Unary": (grpc.unary_unary_rpc_method_handler, servicer.unary),
        "ServerStream": (grpc.unary_stream_rpc_method_handler, servicer.server_stream),
        "Flood": (grpc.unary_stream_rpc_method_handler, servicer.flood),
        "ClientStream": (grpc.stream_unary_rpc_method_handler, servicer.client_stream),
        "Bidi": (grpc.stream_stream_rpc_method_handler, servicer.bidi),
        "Writer": (grpc.unary_stream_rpc_method_handler, servicer.writer),
        "ReaderWriter": (grpc.stream_stream_rpc_method_handler, servicer.reader_writer),
        "SyncUnary": (grpc.unary_unary_rpc_method_handler, servicer.sync_unary),
        "SyncStream": (grpc.stream_stream_rpc_method_handler, servicer.sync_stream),
    }
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {name: factory(behavior, _identity, _identity) for name, (factory, behavior) in kinds.items()},
    )


class Embedder(embedding_pb2_grpc.EmbeddingServiceServicer):
    async def EmbedTexts(self, request: Any, context: Any) -> Any:
        return embedding_pb2.EmbedTextsResponse()


@dataclass
class Env:
    registry: CollectorRegistry
    servicer: Servicer
    channel: grpc.aio.Channel

    def unary(self) -> Any:
        return self.channel.unary_unary(f"/{SERVICE}/Unary", _identity, _identity)

    def stream(self, method: str, kind: str) -> Any:
        return getattr(self.channel, kind)(f"/{SERVICE}/{method}", _identity, _identity)

    def value(self, side: str, name: str, kind: str, method: str, code: str | None = None) -> float:
        labels = {"grpc_type": kind, "grpc_service": SERVICE, "grpc_method": method}
        if code is not None:
            labels["grpc_code"] = code
        return self.registry.get_sample_value(f"grpc_{side}_{name}", labels) or 0.0

    def both(self, name: str, kind: str, method: str, code: str | None = None) -> tuple[float, float]:
        return self.value("server", name, kind, method, code), self.value("client", name, kind, method, code)

    async def handled(self, kind: str, method: str, code: str) -> None:
        """Waits until both sides recorded one ``code`` (the server may finish after the client saw it)."""
        await eventually(lambda: self.both("handled_total", kind, method, code) == (1.0, 1.0))


async def eventually(check: Callable[[], bool]) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    assert check()


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    registry = CollectorRegistry()
    grpc_metrics = GrpcMetrics(registry)
    servicer = Servicer()
    server = grpc.aio.server(interceptors=[server_interceptor(grpc_metrics)])
    server.add_generic_rpc_handlers((_handlers(servicer),))
    embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(Embedder(), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=client_interceptors(grpc_metrics))
    try:
        yield Env(registry, servicer, channel)
    finally:
        servicer.never.set()
        await channel.close(None)
        await server.stop(None)


async def test_unary_ok_records_every_metric_on_both_sides(env: Env) -> None:
    assert await env.unary()(b"hi") == b"HI"

    await env.handled("unary", "Unary", "OK")
    assert env.both("started_total", "unary", "Unary") == (1.0, 1.0)
    assert env.both("msg_received_total", "unary", "Unary") == (1.0, 1.0)
    assert env.both("msg_sent_total", "unary", "Unary") == (1.0, 1.0)
    assert env.both("handling_seconds_count", "unary", "Unary") == (1.0, 1.0)
    names = {family.name for family in env.registry.collect()}
    for side in ("server", "client"):
        for name in ("started", "handled", "msg_received", "msg_sent"):
            assert f"grpc_{side}_{name}" in names  # prometheus_client drops _total from family names
        assert f"grpc_{side}_handling_seconds" in names
    bucket = env.registry.get_sample_value(
        "grpc_server_handling_seconds_bucket",
        {"grpc_type": "unary", "grpc_service": SERVICE, "grpc_method": "Unary", "le": "10.0"},
    )
    assert bucket == 1.0


@pytest.mark.parametrize(
    ("request_bytes", "code"),
    [
        (b"set_code", grpc.StatusCode.INVALID_ARGUMENT),
        (b"abort", grpc.StatusCode.NOT_FOUND),
        (b"raise", grpc.StatusCode.UNKNOWN),
        (b"set_code_raise", grpc.StatusCode.FAILED_PRECONDITION),
    ],
)
async def test_unary_error_codes(env: Env, request_bytes: bytes, code: grpc.StatusCode) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await env.unary()(request_bytes)
    assert raised.value.code() == code

    await env.handled("unary", "Unary", code.name)
    assert env.both("handled_total", "unary", "Unary", "OK") == (0.0, 0.0)
    assert env.both("msg_received_total", "unary", "Unary") == (1.0, 0.0)
    assert env.both("msg_sent_total", "unary", "Unary") == (0.0, 1.0)


async def test_server_stream_counts_each_response(env: Env) -> None:
    call = env.stream("ServerStream", "unary_stream")(b"3")
    assert [response async for response in call] == [b"0", b"1", b"2"]
    assert await call.code() == grpc.StatusCode.OK

    await env.handled("server_stream", "ServerStream", "OK")
    assert env.both("msg_sent_total", "server_stream", "ServerStream") == (3.0, 1.0)
    assert env.both("msg_received_total", "server_stream", "ServerStream") == (1.0, 3.0)


async def test_server_stream_abort_after_messages(env: Env) -> None:
    call = env.stream("ServerStream", "unary_stream")(b"2:abort")
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for response in call:
            received.append(response)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert received == [b"0", b"1"]

    await env.handled("server_stream", "ServerStream", "RESOURCE_EXHAUSTED")
    assert env.both("msg_sent_total", "server_stream", "ServerStream") == (2.0, 1.0)
    assert env.both("msg_received_total", "server_stream", "ServerStream") == (1.0, 2.0)


async def test_client_stream_with_async_iterator(env: Env) -> None:
    async def requests() -> AsyncIterator[bytes]:
        for part in (b"a", b"b", b"c", b"d"):
            yield part

    assert await env.stream("ClientStream", "stream_unary")(requests()) == b"a,b,c,d"

    await env.handled("client_stream", "ClientStream", "OK")
    assert env.both("msg_received_total", "client_stream", "ClientStream") == (4.0, 1.0)
    assert env.both("msg_sent_total", "client_stream", "ClientStream") == (1.0, 4.0)


async def test_client_stream_with_write_api_and_sync_iterator(env: Env) -> None:
    call = env.stream("ClientStream", "stream_unary")()
    await call.write(b"x")
    await call.write(b"y")
    await call.done_writing()
    assert await call == b"x,y"
    assert await call.code() == grpc.StatusCode.OK
    assert await env.stream("ClientStream", "stream_unary")(iter([b"p", b"q", b"r"])) == b"p,q,r"

    await eventually(lambda: env.both("handled_total", "client_stream", "ClientStream", "OK") == (2.0, 2.0))
    assert env.both("msg_received_total", "client_stream", "ClientStream") == (5.0, 2.0)
    assert env.both("msg_sent_total", "client_stream", "ClientStream") == (2.0, 5.0)


async def test_client_stream_abort(env: Env) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await env.stream("ClientStream", "stream_unary")(iter([b"a", b"abort"]))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    await env.handled("client_stream", "ClientStream", "INVALID_ARGUMENT")
    assert env.both("msg_sent_total", "client_stream", "ClientStream") == (0.0, 2.0)
    assert env.both("msg_received_total", "client_stream", "ClientStream") == (2.0, 0.0)


async def test_bidi_stream_with_iterator_and_with_read_write(env: Env) -> None:
    call = env.stream("Bidi", "stream_stream")(iter([b"a", b"b", b"c"]))
    assert [response async for response in call] == [b"A", b"B", b"C"]
    assert await call.code() == grpc.StatusCode.OK

    call = env.stream("Bidi", "stream_stream")()
    await call.write(b"q")
    assert await call.read() == b"Q"
    await call.done_writing()
    assert await call.read() is grpc.aio.EOF  # type: ignore[attr-defined]
    assert await call.code() == grpc.StatusCode.OK

    await eventually(lambda: env.both("handled_total", "bidi_stream", "Bidi", "OK") == (2.0, 2.0))
    assert env.both("msg_received_total", "bidi_stream", "Bidi") == (4.0, 4.0)
    assert env.both("msg_sent_total", "bidi_stream", "Bidi") == (4.0, 4.0)


async def test_coroutine_streaming_handlers_count_context_read_and_write(env: Env) -> None:
    assert [r async for r in env.stream("Writer", "unary_stream")(b"2")] == [b"0", b"1"]
    assert [r async for r in env.stream("ReaderWriter", "stream_stream")(iter([b"m", b"n", b"o"]))] == [
        b"M",
        b"N",
        b"O",
    ]

    await env.handled("server_stream", "Writer", "OK")
    await env.handled("bidi_stream", "ReaderWriter", "OK")
    assert env.both("msg_sent_total", "server_stream", "Writer") == (2.0, 1.0)
    assert env.both("msg_received_total", "bidi_stream", "ReaderWriter") == (3.0, 3.0)
    assert env.both("msg_sent_total", "bidi_stream", "ReaderWriter") == (3.0, 3.0)


async def test_sync_handlers_run_and_are_counted(env: Env) -> None:
    assert await env.stream("SyncUnary", "unary_unary")(b"s") == b"S"
    assert [r async for r in env.stream("SyncStream", "stream_stream")(iter([b"1", b"2"]))] == [
        b"1",
        b"1",
        b"2",
        b"2",
    ]

    await env.handled("unary", "SyncUnary", "OK")
    await env.handled("bidi_stream", "SyncStream", "OK")
    assert env.both("msg_received_total", "bidi_stream", "SyncStream") == (2.0, 4.0)
    assert env.both("msg_sent_total", "bidi_stream", "SyncStream") == (4.0, 2.0)


async def test_client_cancels_unary(env: Env) -> None:
    call = env.unary()(b"wait")
    await env.servicer.entered.wait()
    assert call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await call.code() == grpc.StatusCode.CANCELLED

    await env.handled("unary", "Unary", "CANCELLED")
    assert env.both("handled_total", "unary", "Unary", "OK") == (0.0, 0.0)


async def test_client_cancels_server_stream_midway(env: Env) -> None:
    call = env.stream("ServerStream", "unary_stream")(b"1:wait")
    assert await call.read() == b"0"
    await env.servicer.entered.wait()
    assert call.cancel()
    assert await call.code() == grpc.StatusCode.CANCELLED

    await env.handled("server_stream", "ServerStream", "CANCELLED")
    assert env.both("msg_sent_total", "server_stream", "ServerStream") == (1.0, 1.0)
    assert env.both("msg_received_total", "server_stream", "ServerStream") == (1.0, 1.0)


async def test_client_cancels_while_the_server_waits_to_write(env: Env) -> None:
    call = env.stream("Flood", "unary_stream")(b"")
    assert len(await call.read()) == 1_000_000
    assert call.cancel()

    await env.handled("server_stream", "Flood", "CANCELLED")
    assert env.value("server", "msg_sent_total", "server_stream", "Flood") >= 1.0
    assert env.value("client", "msg_received_total", "server_stream", "Flood") == 1.0


async def test_deadline_exceeded_on_both_sides(env: Env) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await env.unary()(b"wait", timeout=0.2)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    await env.handled("unary", "Unary", "DEADLINE_EXCEEDED")


async def test_stream_never_iterated_is_recorded_when_the_call_ends(env: Env) -> None:
    # grpc delivers the status only once every message was read, so the stream here is empty.
    call = env.stream("ServerStream", "unary_stream")(b"0")
    assert await call.code() == grpc.StatusCode.OK

    await env.handled("server_stream", "ServerStream", "OK")
    assert env.both("msg_received_total", "server_stream", "ServerStream") == (1.0, 0.0)


async def test_unknown_method_is_counted_on_the_client_only(env: Env) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await env.channel.unary_unary(f"/{SERVICE}/Missing", _identity, _identity)(b"")
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED

    assert env.both("handled_total", "unary", "Missing", "UNIMPLEMENTED") == (0.0, 1.0)
    assert env.both("started_total", "unary", "Missing") == (0.0, 1.0)


async def test_generated_stub_uses_full_service_name(env: Env) -> None:
    stub = embedding_pb2_grpc.EmbeddingServiceStub(env.channel)
    await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["a"]))

    labels = {"grpc_type": "unary", "grpc_service": EMBEDDING, "grpc_method": "EmbedTexts", "grpc_code": "OK"}
    await eventually(lambda: env.registry.get_sample_value("grpc_server_handled_total", labels) == 1.0)
    assert env.registry.get_sample_value("grpc_client_handled_total", labels) == 1.0


def test_separate_registries_do_not_clash() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    a, b = GrpcMetrics(first), GrpcMetrics(second)
    labels = ("unary", SERVICE, "Unary")
    a.server.started.labels(*labels).inc()
    b.server.started.labels(*labels).inc(2)
    sample = dict(zip(("grpc_type", "grpc_service", "grpc_method"), labels, strict=True))
    assert first.get_sample_value("grpc_server_started_total", sample) == 1.0
    assert second.get_sample_value("grpc_server_started_total", sample) == 2.0
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        GrpcMetrics(first)


def test_default_metrics_is_one_per_process() -> None:
    assert default_metrics() is default_metrics()
    assert metrics.server_interceptor() is not None  # builds on the singleton without "Duplicated timeseries"
    assert len(metrics.client_interceptors()) == 4


async def test_composes_with_opentelemetry_interceptors_outside() -> None:
    """The bootstrap order: OpenTelemetry outermost, then metrics, on both sides."""
    registry = CollectorRegistry()
    grpc_metrics = GrpcMetrics(registry)
    server = grpc.aio.server(interceptors=[aio_server_interceptor(), server_interceptor(grpc_metrics)])
    server.add_generic_rpc_handlers((_handlers(Servicer()),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    interceptors = [*aio_client_interceptors(), *client_interceptors(grpc_metrics)]
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=interceptors)
    env = Env(registry, Servicer(), channel)
    try:
        assert await env.unary()(b"a") == b"A"
        assert [r async for r in env.stream("ServerStream", "unary_stream")(b"2")] == [b"0", b"1"]
        assert await env.stream("ClientStream", "stream_unary")(iter([b"a", b"b"])) == b"a,b"
        assert [r async for r in env.stream("Bidi", "stream_stream")(iter([b"a"]))] == [b"A"]
        with pytest.raises(grpc.aio.AioRpcError):
            await env.unary()(b"abort")

        await env.handled("unary", "Unary", "NOT_FOUND")
        for kind, method in (
            ("unary", "Unary"),
            ("server_stream", "ServerStream"),
            ("client_stream", "ClientStream"),
            ("bidi_stream", "Bidi"),
        ):
            await env.handled(kind, method, "OK")
        assert env.both("msg_sent_total", "server_stream", "ServerStream") == (2.0, 1.0)
        assert env.both("msg_received_total", "client_stream", "ClientStream") == (2.0, 1.0)
    finally:
        await channel.close(None)
        await server.stop(None)
