"""Server interceptor that maps domain errors to gRPC status codes and logs every call with its request
id (and analysis id); client interceptor that forwards both to the services a call reaches.

The ids travel as gRPC metadata, ``x-request-id`` and ``x-analysis-id``: a server binds them into its
log context (a request id is made up when none came) and onto the call's span; a client sends the ones
bound in its own log context, so a downstream call logs the id of the call, or analysis, it serves.
"""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeAlias

import grpc
import structlog
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry import trace

from briefxai_common import tracing
from briefxai_common.errors import ERROR_DOMAIN, InvalidArgument, RetryableError, ServiceError
from briefxai_common.logging import get_logger

REQUEST_ID_HEADER = "x-request-id"
ANALYSIS_ID_HEADER = "x-analysis-id"
# (metadata key, log context key, span attribute)
FORWARDED_IDS = (
    (REQUEST_ID_HEADER, "request_id", tracing.REQUEST_ID),
    (ANALYSIS_ID_HEADER, "analysis_id", tracing.ANALYSIS_ID),
)
MAX_ID_CHARS = 128
HEALTH_METHOD_PREFIX = "/grpc.health.v1.Health/"
log = get_logger(__name__)


def status_details(error: ServiceError) -> tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]]:
    """The status code, message and ``grpc-status-details-bin`` trailer (google.rpc.Status) for an error.

    INVALID_ARGUMENT carries BadRequest (every field violation); RESOURCE_EXHAUSTED and UNAVAILABLE
    carry ErrorInfo and, when the error knows how long to wait, RetryInfo (AIP-193).
    """
    code = grpc.StatusCode[error.code_name]
    message = str(error)
    status = status_pb2.Status(code=getattr(code_pb2, error.code_name), message=message)
    for detail in _details(error):
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return code, message, (("grpc-status-details-bin", status.SerializeToString()),)


def _details(error: ServiceError) -> list[Message]:
    if isinstance(error, InvalidArgument):
        return [
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in error.violations
                ]
            )
        ]
    if isinstance(error, RetryableError):
        details: list[Message] = [
            error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata)
        ]
        if error.retry_after_seconds is not None:
            delay = duration_pb2.Duration()
            delay.FromNanoseconds(round(error.retry_after_seconds * 1e9))
            details.append(error_details_pb2.RetryInfo(retry_delay=delay))
        return details
    return []


def _call_ids(context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, str]:
    """The request id (sent, else a new one) and the analysis id (when sent) of a call, by log key;
    also set as attributes of the call's span."""
    sent = {
        key: value[:MAX_ID_CHARS]
        for key, value in context.invocation_metadata() or ()
        if isinstance(value, str) and value.strip()
    }
    ids: dict[str, str] = {}
    span = trace.get_current_span()
    for header, log_key, attribute in FORWARDED_IDS:
        value = sent.get(header) or (uuid.uuid4().hex if header == REQUEST_ID_HEADER else "")
        if value:
            ids[log_key] = value
            span.set_attribute(attribute, value)
    return ids


Pairs: TypeAlias = Sequence[tuple[str, str]]


def with_metadata(details: grpc.aio.ClientCallDetails, pairs: Pairs) -> grpc.aio.ClientCallDetails:
    """``details`` with ``pairs`` added to its metadata; a key the caller set itself is kept."""
    if not pairs:
        return details
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    for key, value in pairs:
        if key not in metadata:
            metadata.add(key, value)
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _AddUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, pairs: Callable[[], Pairs]) -> None:
        self.pairs = pairs

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(with_metadata(client_call_details, self.pairs()), request)


class _AddUnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, pairs: Callable[[], Pairs]) -> None:
        self.pairs = pairs

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(with_metadata(client_call_details, self.pairs()), request)


class _AddStreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    def __init__(self, pairs: Callable[[], Pairs]) -> None:
        self.pairs = pairs

    async def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(with_metadata(client_call_details, self.pairs()), request_iterator)


class _AddStreamStream(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, pairs: Callable[[], Pairs]) -> None:
        self.pairs = pairs

    async def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(with_metadata(client_call_details, self.pairs()), request_iterator)


def adding_interceptors(pairs: Callable[[], Pairs]) -> list[Any]:
    """aio client interceptors, one per call kind (grpc.aio files an interceptor under one kind only),
    that add the metadata ``pairs()`` gives at each call."""
    return [_AddUnaryUnary(pairs), _AddUnaryStream(pairs), _AddStreamUnary(pairs), _AddStreamStream(pairs)]


def metadata_interceptors(pairs: Pairs) -> list[Any]:
    """aio client interceptors that add the fixed ``pairs`` to every call's metadata."""
    fixed = tuple(pairs)
    return adding_interceptors(lambda: fixed)


def _forwarded_ids() -> Pairs:
    bound = structlog.contextvars.get_contextvars()
    return [(header, str(bound[key])) for header, key, _ in FORWARDED_IDS if bound.get(key)]


def forwarding_interceptors() -> list[Any]:
    """Client interceptors that send the request id and analysis id bound in the caller's log context as
    ``x-request-id`` and ``x-analysis-id``; metadata the caller set itself is kept."""
    return adding_interceptors(_forwarded_ids)


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """Turns :class:`ServiceError` into the matching status; binds a request id and logs each call."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if handler.response_streaming:
            behavior = handler.unary_stream or handler.stream_stream
            # Streaming handlers are async generators, or coroutines that call context.write (health Watch).
            wrapped_stream = (
                _wrap_streaming(method, behavior)
                if inspect.isasyncgenfunction(behavior)
                else _wrap_unary(method, behavior)
            )
            if handler.request_streaming:
                return grpc.stream_stream_rpc_method_handler(
                    wrapped_stream, handler.request_deserializer, handler.response_serializer
                )
            return grpc.unary_stream_rpc_method_handler(
                wrapped_stream, handler.request_deserializer, handler.response_serializer
            )
        behavior = handler.unary_unary or handler.stream_unary
        wrapped_unary = _wrap_unary(method, behavior)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(
                wrapped_unary, handler.request_deserializer, handler.response_serializer
            )
        return grpc.unary_unary_rpc_method_handler(
            wrapped_unary, handler.request_deserializer, handler.response_serializer
        )


async def _abort(context: grpc.aio.ServicerContext[Any, Any], method: str, error: ServiceError) -> None:
    code, message, trailers = status_details(error)
    log.info("rpc_rejected", method=method, code=code.name, error=message)
    await context.abort(code, message, trailing_metadata=trailers)


def _log_aborted(method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """A handler that called ``context.abort`` chose its status (the health service's NOT_FOUND for an
    unknown service name is one): a normal outcome, logged without a stack (health's at debug)."""
    code = context.code()
    fields = {"method": method, "code": getattr(code, "name", str(code)), "details": context.details()}
    if method.startswith(HEALTH_METHOD_PREFIX):
        log.debug("rpc_aborted", **fields)
    else:
        log.info("rpc_aborted", **fields)


def _log_done(method: str, started: float, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    code = context.code()
    log.debug(
        "rpc_done",
        method=method,
        code=getattr(code, "name", "OK"),
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
    )


def _wrap_unary(method: str, behavior: Any) -> Callable[..., Awaitable[Any]]:
    async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(**_call_ids(context)):
            try:
                return await behavior(request, context)
            except ServiceError as error:
                await _abort(context, method, error)
            except grpc.aio.AbortError:
                _log_aborted(method, context)
                raise
            except Exception:
                log.exception("rpc_failed", method=method)
                raise
            finally:
                _log_done(method, started, context)

    return handle


def _wrap_streaming(method: str, behavior: Any) -> Callable[..., AsyncIterator[Any]]:
    async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(**_call_ids(context)):
            try:
                async for response in behavior(request, context):
                    yield response
            except ServiceError as error:
                await _abort(context, method, error)
            except grpc.aio.AbortError:
                _log_aborted(method, context)
                raise
            except Exception:
                log.exception("rpc_failed", method=method)
                raise
            finally:
                _log_done(method, started, context)

    return handle
