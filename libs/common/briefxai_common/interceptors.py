"""Server interceptor that maps domain errors to gRPC status codes and logs every call with its request id."""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from briefxai_common.errors import ERROR_DOMAIN, InvalidArgument, RetryableError, ServiceError
from briefxai_common.logging import get_logger

REQUEST_ID_HEADER = "x-request-id"
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


def _request_id(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str) and value:
            return value[:128]
    return uuid.uuid4().hex


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
        with structlog.contextvars.bound_contextvars(request_id=_request_id(context)):
            try:
                return await behavior(request, context)
            except ServiceError as error:
                await _abort(context, method, error)
            except Exception:
                log.exception("rpc_failed", method=method)
                raise
            finally:
                _log_done(method, started, context)

    return handle


def _wrap_streaming(method: str, behavior: Any) -> Callable[..., AsyncIterator[Any]]:
    async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(request_id=_request_id(context)):
            try:
                async for response in behavior(request, context):
                    yield response
            except ServiceError as error:
                await _abort(context, method, error)
            except Exception:
                log.exception("rpc_failed", method=method)
                raise
            finally:
                _log_done(method, started, context)

    return handle
