"""Prometheus metrics for grpc.aio servers and clients, named and labelled exactly like go-grpc-prometheus.

``py-grpc-prometheus`` refuses aio servers, so this module carries its own interceptors:

- server: ``grpc_server_started_total``, ``grpc_server_handled_total``, ``grpc_server_msg_received_total``,
  ``grpc_server_msg_sent_total`` and the ``grpc_server_handling_seconds`` histogram;
- client: the same five as ``grpc_client_*``.

Labels are ``grpc_type`` (unary, client_stream, server_stream, bidi_stream), ``grpc_service`` (the full
service name, ``briefxai.embedding.v1.EmbeddingService``), ``grpc_method`` (``EmbedTexts``) and, on
``*_handled_total`` only, ``grpc_code`` (the ``grpc.StatusCode`` name: ``OK``, ``INVALID_ARGUMENT``...).
Histogram buckets default to Go's ``prometheus.DefBuckets``.

How the handled code is found on the server: a normal return gives ``context.code()`` (OK when unset); an
``await context.abort(...)`` (grpc.aio raises ``AbortError``) or any other exception gives the code set on
the context, else UNKNOWN (what grpc.aio then sends); ``asyncio.CancelledError`` (the client cancelled or
the deadline passed) gives DEADLINE_EXCEEDED when ``context.time_remaining()`` is 0, else CANCELLED.
Exceptions are always re-raised. Message counting: unary requests/responses count once (a response only
with an OK code, as in Go); request streams count each message as the handler pulls it from the request
iterator (or from ``context.read()``); async-generator responses count each message once grpc has
written it. Streaming handlers written as coroutines with ``context.write``/``context.read`` (the
reader/writer API) are counted through a context proxy that counts those calls (but OpenTelemetry's aio
server interceptor, outermost in the bootstrap, iterates streaming handlers with ``async for`` and so
needs async generators). Sync handlers (which grpc.aio runs in a thread pool) get sync wrappers; their
cancellation cannot be observed.

On the client a unary response is awaited inside the interceptor; other calls record their code when the
response stream ends or the call is awaited, with a done-callback as fallback for calls that are cancelled
or never read to the end. Counting never changes ``async for``, ``await call``, ``call.code()``,
``call.write()`` or ``call.cancel()``.

A server interceptor given a :class:`~briefxai_common.service_metrics.ServiceObserver` also records the
service's own series (``briefxai_operations_total{service,operation,status}``, the operation duration,
active sessions and errors by kind) from the same code and time; :func:`observe_service` (called by the
bootstrap once the server has started) declares them at 0 for every method of the service and measures
the event loop's lag until the server terminates.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Generator, Iterable, Iterator
from typing import Any, cast

import grpc
from google.protobuf import descriptor_pool
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from briefxai_common import service_metrics
from briefxai_common.service_metrics import ServiceObserver as ServiceObserver

GO_DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_OK, _CANCELLED, _UNKNOWN = grpc.StatusCode.OK, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN
_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs
_LABELS = ("grpc_type", "grpc_service", "grpc_method")
_HELP = {  # go-grpc-prometheus's help texts
    "server": (
        "Total number of RPCs started on the server.",
        "Total number of RPCs completed on the server, regardless of success or failure.",
        "Total number of RPC stream messages received on the server.",
        "Total number of gRPC stream messages sent by the server.",
        "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
    ),
    "client": (
        "Total number of RPCs started on the client.",
        "Total number of RPCs completed by the client, regardless of success or failure.",
        "Total number of RPC stream messages received by the client.",
        "Total number of gRPC stream messages sent by the client.",
        "Histogram of response latency (seconds) of the gRPC until it is finished by the application.",
    ),
}


class _Side:
    """The five metrics of one side (``server`` or ``client``)."""

    def __init__(self, side: str, registry: CollectorRegistry, buckets: tuple[float, ...]) -> None:
        started, handled, received, sent, seconds = _HELP[side]
        self.started = Counter(f"grpc_{side}_started_total", started, _LABELS, registry=registry)
        self.handled = Counter(
            f"grpc_{side}_handled_total", handled, (*_LABELS, "grpc_code"), registry=registry
        )
        self.msg_received = Counter(f"grpc_{side}_msg_received_total", received, _LABELS, registry=registry)
        self.msg_sent = Counter(f"grpc_{side}_msg_sent_total", sent, _LABELS, registry=registry)
        self.handling_seconds = Histogram(
            f"grpc_{side}_handling_seconds", seconds, _LABELS, registry=registry, buckets=buckets
        )


class GrpcMetrics:
    """Owns the server and client metric objects, registered on ``registry`` (default: the global one)."""

    def __init__(
        self, registry: CollectorRegistry | None = None, buckets: tuple[float, ...] = GO_DEFAULT_BUCKETS
    ) -> None:
        registry = REGISTRY if registry is None else registry
        self.server = _Side("server", registry, buckets)
        self.client = _Side("client", registry, buckets)


_default: GrpcMetrics | None = None
_default_lock = threading.Lock()


def default_metrics() -> GrpcMetrics:
    """The process-wide :class:`GrpcMetrics` on the default registry, created on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = GrpcMetrics()
        return _default


def _kind(request_streaming: bool, response_streaming: bool) -> str:
    if request_streaming:
        return "bidi_stream" if response_streaming else "client_stream"
    return "server_stream" if response_streaming else "unary"


class _Rpc:
    """One RPC being measured: counts messages and records ``handled`` once (and, on a server with an
    observer, the service's ``briefxai_operations_total`` and friends)."""

    def __init__(
        self, side: _Side, kind: str, full_method: str | bytes, observer: ServiceObserver | None = None
    ) -> None:
        name = full_method.decode() if isinstance(full_method, bytes) else full_method
        service, _, method = name.lstrip("/").rpartition("/")
        self._side, self._labels, self.finished = side, (kind, service, method), False
        self._observer = observer
        side.started.labels(*self._labels).inc()
        if observer is not None:
            observer.rpc_started(service)
        self._received = side.msg_received.labels(*self._labels)
        self._sent = side.msg_sent.labels(*self._labels)
        self._start = time.perf_counter()

    def received(self) -> None:
        self._received.inc()

    def sent(self) -> None:
        self._sent.inc()

    def finish(self, code: grpc.StatusCode) -> bool:
        """Records the outcome; returns False (and records nothing) when it was already recorded."""
        if self.finished:
            return False
        self.finished = True
        seconds = time.perf_counter() - self._start
        self._side.handled.labels(*self._labels, code.name).inc()
        self._side.handling_seconds.labels(*self._labels).observe(seconds)
        if self._observer is not None:
            _, service, method = self._labels
            self._observer.rpc_finished(service, method, code.name, seconds)
        return True


# ---------------------------------------------------------------------------------------------- server


def _context_code(context: Any) -> grpc.StatusCode | None:
    code = context.code()
    return code if isinstance(code, grpc.StatusCode) else None


def _server_code(error: BaseException, context: Any) -> grpc.StatusCode:
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            return grpc.StatusCode.DEADLINE_EXCEEDED
        # GeneratorExit: grpc stopped pulling responses, typically cancelled while it was writing one.
        code = _context_code(context) if isinstance(error, GeneratorExit) else None
        return code if code is not None and code != _OK else _CANCELLED
    code = _context_code(context)
    return code if code is not None and code != _OK else _UNKNOWN


class _CountingContext:
    """Delegates to the servicer context; counts ``read()``/``write()`` and keeps the code a sync handler sets.

    grpc.aio's context for sync handlers has ``set_code`` and ``abort`` but no ``code()``.
    """

    def __init__(self, context: Any, rpc: _Rpc) -> None:
        self._context, self._rpc = context, rpc
        self._code: grpc.StatusCode | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def code(self) -> Any:
        real = getattr(self._context, "code", None)
        return real() if real is not None else self._code

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code
        self._context.set_code(code)

    def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> Any:
        self._code = code  # a coroutine on aio contexts, raises at once on sync ones
        return self._context.abort(code, details, trailing_metadata)

    async def read(self) -> Any:
        message = await self._context.read()
        if message is not _EOF:
            self._rpc.received()
        return message

    async def write(self, message: Any) -> None:
        await self._context.write(message)
        self._rpc.sent()


async def _count_async_requests(requests: AsyncIterable[Any], rpc: _Rpc) -> AsyncIterator[Any]:
    async for request in requests:
        rpc.received()
        yield request


def _count_sync_requests(requests: Iterable[Any], rpc: _Rpc) -> Iterator[Any]:
    for request in requests:
        rpc.received()
        yield request


def _wrap_behavior(
    behavior: Callable[..., Any],
    side: _Side,
    method: str,
    req_stream: bool,
    resp_stream: bool,
    observer: ServiceObserver | None = None,
) -> Any:
    kind = _kind(req_stream, resp_stream)

    proxy_context = req_stream or resp_stream or not inspect.iscoroutinefunction(behavior)

    def start(request: Any, context: Any) -> tuple[_Rpc, Any, Any]:
        rpc = _Rpc(side, kind, method, observer)
        if not req_stream:
            rpc.received()
        elif hasattr(request, "__aiter__"):
            request = _count_async_requests(request, rpc)
        else:
            request = _count_sync_requests(request, rpc)
        return rpc, request, (_CountingContext(context, rpc) if proxy_context else context)

    def finish_ok(rpc: _Rpc, context: Any) -> None:
        code = _context_code(context) or _OK
        if not resp_stream and code == _OK:
            rpc.sent()
        rpc.finish(code)

    if inspect.isasyncgenfunction(behavior):

        async def async_gen(request: Any, context: Any) -> AsyncIterator[Any]:
            rpc, request, inner = start(request, context)
            try:
                async for response in behavior(request, inner):
                    yield response
                    rpc.sent()  # grpc asks for the next message only once this one is written
            except BaseException as error:
                rpc.finish(_server_code(error, inner))
                raise
            finish_ok(rpc, inner)

        return async_gen

    if inspect.iscoroutinefunction(behavior):

        async def coroutine(request: Any, context: Any) -> Any:
            rpc, request, inner = start(request, context)
            try:
                response = await behavior(request, inner)
            except BaseException as error:
                rpc.finish(_server_code(error, inner))
                raise
            finish_ok(rpc, inner)
            return response

        return coroutine

    if resp_stream:

        def sync_gen(request: Any, context: Any) -> Iterator[Any]:
            rpc, request, inner = start(request, context)
            try:
                for response in behavior(request, inner):
                    yield response
                    rpc.sent()
            except BaseException as error:
                rpc.finish(_server_code(error, inner))
                raise
            finish_ok(rpc, inner)

        return sync_gen

    def sync_unary(request: Any, context: Any) -> Any:
        rpc, request, inner = start(request, context)
        try:
            response = behavior(request, inner)
        except BaseException as error:
            rpc.finish(_server_code(error, inner))
            raise
        finish_ok(rpc, inner)
        return response

    return sync_unary


_HANDLER_FACTORIES = {
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}


class _ServerInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, metrics: GrpcMetrics, observer: ServiceObserver | None) -> None:
        self._side = metrics.server
        self._observer = observer

    # grpc-stubs says the handler is never None, but None (method not found) is what grpc.aio expects.
    async def intercept_service(  # type: ignore[override]
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED, not counted (as in Go)
            return None
        req_stream, resp_stream = bool(handler.request_streaming), bool(handler.response_streaming)
        attribute, factory = _HANDLER_FACTORIES[(req_stream, resp_stream)]
        wrapped = _wrap_behavior(
            getattr(handler, attribute),
            self._side,
            handler_call_details.method,
            req_stream,
            resp_stream,
            self._observer,
        )
        result: grpc.RpcMethodHandler = factory(
            wrapped, handler.request_deserializer, handler.response_serializer
        )
        return result


def server_interceptor(
    metrics: GrpcMetrics | None = None, observer: ServiceObserver | None = None
) -> grpc.aio.ServerInterceptor:
    """A grpc.aio server interceptor recording ``grpc_server_*`` (on :func:`default_metrics` by default)
    and, given an ``observer``, the service's ``briefxai_operations_total`` and friends."""
    return _ServerInterceptor(metrics or default_metrics(), observer)


def method_names(grpc_services: Iterable[str]) -> list[str]:
    """The method names of the full gRPC service names (from the default protobuf descriptor pool)."""
    pool = descriptor_pool.Default()
    names: list[str] = []
    for service in grpc_services:
        try:
            names.extend(m.name for m in pool.FindServiceByName(service).methods)
        except KeyError:  # a service registered without a generated descriptor
            continue
    return names


async def _lag_until_terminated(service: str, server: grpc.aio.Server) -> None:
    lag = asyncio.create_task(service_metrics.measure_event_loop_lag(service), name=f"{service}-loop-lag")
    try:
        await server.wait_for_termination()
    finally:
        lag.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lag


def observe_service(
    observer: ServiceObserver, grpc_services: Iterable[str], server: grpc.aio.Server
) -> asyncio.Task[None]:
    """Declares the service's RPC series (at 0) and measures the event loop's lag until ``server``
    terminates (the bootstrap calls this once the server has started)."""
    grpc_services = list(grpc_services)
    observer.serve(grpc_services, method_names(grpc_services))
    task = asyncio.create_task(
        _lag_until_terminated(observer.service, server), name=f"{observer.service}-observer"
    )
    _pending.add(task)
    task.add_done_callback(_pending.discard)
    return task


# ---------------------------------------------------------------------------------------------- client

_pending: set[asyncio.Task[None]] = set()


async def _finish_from_call(rpc: _Rpc, call: Any) -> None:
    rpc.finish(await call.code())


def _finish_when_done(rpc: _Rpc, call: Any) -> None:
    """Fallback for calls nobody reads to the end: record the code once the call is done."""

    def on_done(done: Any) -> None:
        if rpc.finished:
            return
        if done.cancelled():
            rpc.finish(_CANCELLED)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a call cancelled from a finalizer outside the loop
            return
        task = loop.create_task(_finish_from_call(rpc, done))
        _pending.add(task)
        task.add_done_callback(_pending.discard)

    call.add_done_callback(on_done)


def _client_error_code(error: BaseException) -> grpc.StatusCode:
    if isinstance(error, grpc.aio.AioRpcError):
        return error.code()
    return _CANCELLED if isinstance(error, asyncio.CancelledError) else _UNKNOWN


async def _count_requests(requests: Any, rpc: _Rpc) -> AsyncIterator[Any]:
    """Yields the caller's (sync or async) requests; counts each once grpc has written it."""
    if hasattr(requests, "__aiter__"):
        async for request in requests:
            yield request
            rpc.sent()
    else:
        for request in requests:
            yield request
            rpc.sent()


async def _count_responses(call: Any, rpc: _Rpc) -> AsyncIterator[Any]:
    try:
        async for response in call:
            rpc.received()
            yield response
    except BaseException as error:
        if not isinstance(error, GeneratorExit):  # the reader stopped early: the done-callback records it
            rpc.finish(_client_error_code(error))
        raise
    rpc.finish(await call.code())


class _UnaryResponseCall:
    """A stream-unary call whose ``await`` records the outcome; everything else goes to the real call."""

    def __init__(self, call: Any, rpc: _Rpc) -> None:
        self._call, self._rpc, self._received = call, rpc, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)

    def __await__(self) -> Generator[Any, None, Any]:
        return self._response().__await__()

    async def _response(self) -> Any:
        try:
            response = await self._call
        except BaseException as error:
            self._rpc.finish(_client_error_code(error))
            raise
        if not self._received:  # the response may be awaited more than once
            self._received = True
            self._rpc.received()
        self._rpc.finish(_OK)
        return response


class _ClientBase:
    def __init__(self, metrics: GrpcMetrics) -> None:
        self._side = metrics.client

    async def _start(self, kind: str, continuation: Any, details: Any, request: Any) -> tuple[_Rpc, Any]:
        """Starts the call; non-unary calls also get the done-callback fallback."""
        rpc = _Rpc(self._side, kind, details.method)
        if kind in ("unary", "server_stream"):
            rpc.sent()
        else:
            request = _count_requests(request, rpc)
        try:
            call = await continuation(details, request)
        except BaseException as error:
            rpc.finish(_client_error_code(error))
            raise
        if kind != "unary":  # a unary call is awaited by the interceptor itself
            _finish_when_done(rpc, call)
        return rpc, call


class _UnaryUnary(_ClientBase, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        rpc, call = await self._start("unary", continuation, client_call_details, request)
        await _UnaryResponseCall(call, rpc)
        return call


class _UnaryStream(_ClientBase, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        rpc, call = await self._start("server_stream", continuation, client_call_details, request)
        return _count_responses(call, rpc)  # grpc wraps an async iterator so code()/cancel() reach `call`


class _StreamUnary(_ClientBase, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        # Not awaited here: a caller using ``call.write()`` needs this interceptor to return first.
        rpc, call = await self._start("client_stream", continuation, client_call_details, request_iterator)
        return _UnaryResponseCall(call, rpc)


class _StreamStream(_ClientBase, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        rpc, call = await self._start("bidi_stream", continuation, client_call_details, request_iterator)
        return _count_responses(call, rpc)


def client_interceptors(metrics: GrpcMetrics | None = None) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors for ``grpc.aio.insecure_channel(..., interceptors=...)`` recording ``grpc_client_*``.

    One per call kind (grpc.aio files each interceptor under the first aio interceptor class it is).
    """
    chosen = metrics or default_metrics()
    interceptors = [_UnaryUnary(chosen), _UnaryStream(chosen), _StreamUnary(chosen), _StreamStream(chosen)]
    return cast(list[grpc.aio.ClientInterceptor], interceptors)
