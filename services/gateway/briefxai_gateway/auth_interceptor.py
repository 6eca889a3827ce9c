"""gRPC adapter of :class:`~briefxai_gateway.security.guard.Guard`: every call of a protected service
(AnalysisService, SecurityService) is admitted by it (UNAUTHENTICATED, PERMISSION_DENIED), runs scoped
to its principal's tenant, and is reported to it when it ends (status code, the resource it acted on).

Health and reflection calls pass untouched. Placed after the tracing and metrics interceptors (refusals
are traced and counted) and before the error mapping (whose status it reads when the call ends).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias, cast

import grpc
from opentelemetry import trace

from briefxai_common.errors import ServiceError
from briefxai_common.interceptors import status_details

from .security.guard import CallFacts, Guard, Outcome
from .security.permissions import Permission, is_protected, permission_for
from .security.principal import Principal, bind_principal

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
USER_ID_METHODS = ("EraseUser", "ExportUserData")


def _authorization(context: Context) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            return value
    return None


def _trace_id() -> str:
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else ""


def user_resource(user_id: str) -> str:
    """``users/<first 16 hex of its SHA-256>``: the audit trail names an erased user without keeping the id."""
    return "users/" + hashlib.sha256(user_id.encode()).hexdigest()[:16]


def resource_of(method: str, request: Any, response: Any) -> str:
    """What the call acted on: ``analyses/<id>``, ``api_keys/<id>`` or ``users/<hash>``."""
    name = method.rpartition("/")[2]
    if name in USER_ID_METHODS:
        return user_resource(getattr(request, "user_id", ""))
    for message in (response, request):
        analysis_id: str = getattr(getattr(message, "analysis", None), "id", "")
        if analysis_id:
            return f"analyses/{analysis_id}"
        key_id: str = getattr(getattr(message, "api_key", None), "id", "")
        if key_id:
            return f"api_keys/{key_id}"
    identifier = getattr(request, "id", "")  # a request stream has none
    if isinstance(identifier, str) and identifier:
        prefix = "api_keys" if name.endswith("ApiKey") else "analyses"
        return f"{prefix}/{identifier.removeprefix('analyses/')}"
    return ""


def _status(context: Context, error: BaseException | None) -> str:
    if isinstance(error, asyncio.CancelledError):
        return "CANCELLED"
    if isinstance(error, ServiceError):
        return error.code_name
    code = context.code()
    if code is not None:
        return getattr(code, "name", str(code))
    return "OK" if error is None else "INTERNAL"


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, guard: Callable[[], Guard]) -> None:
        # A callable: the guard is built when the gateway starts, after the server is.
        self._guard = guard

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not is_protected(method):
            return handler
        if handler.response_streaming:
            behavior = handler.unary_stream or handler.stream_stream
            wrapped_stream = self._streaming(method, behavior)
            if handler.request_streaming:
                return grpc.stream_stream_rpc_method_handler(
                    wrapped_stream, handler.request_deserializer, handler.response_serializer
                )
            return grpc.unary_stream_rpc_method_handler(
                wrapped_stream, handler.request_deserializer, handler.response_serializer
            )
        wrapped = self._unary(method, handler.unary_unary or handler.stream_unary)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(
                wrapped, handler.request_deserializer, handler.response_serializer
            )
        return grpc.unary_unary_rpc_method_handler(
            wrapped, handler.request_deserializer, handler.response_serializer
        )

    async def _admit(self, method: str, context: Context) -> tuple[Guard, Principal, Permission, CallFacts]:
        call = CallFacts(rpc=method, peer=context.peer() or "", trace_id=_trace_id())
        permission = permission_for(method)
        try:
            guard = self._guard()
            principal = await guard.admit(_authorization(context), permission, call)
        except ServiceError as error:
            code, message, trailers = status_details(error)
            await context.abort(code, message, trailing_metadata=trailers)
        bind_principal(principal)
        # admit refuses a method without a permission
        return guard, principal, cast(Permission, permission), call

    def _unary(self, method: str, behavior: Any) -> Callable[..., Awaitable[Any]]:
        async def handle(request: Any, context: Context) -> Any:
            guard, principal, permission, call = await self._admit(method, context)
            response: Any = None
            error: BaseException | None = None
            try:
                response = await behavior(request, context)
                return response
            except BaseException as exc:
                error = exc
                raise
            finally:
                if not isinstance(error, GeneratorExit | KeyboardInterrupt):
                    outcome = Outcome(_status(context, error), resource_of(method, request, response))
                    await guard.finished(principal, permission, call, outcome)

        return handle

    def _streaming(self, method: str, behavior: Any) -> Callable[..., AsyncIterator[Any]]:
        async def handle(request: Any, context: Context) -> AsyncIterator[Any]:
            guard, principal, permission, call = await self._admit(method, context)
            error: BaseException | None = None
            sent = 0
            try:
                async for response in behavior(request, context):
                    sent += 1
                    yield response
            except BaseException as exc:
                error = exc
                raise
            finally:
                if not isinstance(error, GeneratorExit | KeyboardInterrupt):
                    outcome = Outcome(
                        _status(context, error), resource_of(method, request, None), {"messages": sent}
                    )
                    await guard.finished(principal, permission, call, outcome)

        return handle
