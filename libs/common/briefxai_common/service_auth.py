"""The shared service token: workers (embedding, facets, clustering) accept calls from the gateway only.

With ``service_token`` set, a worker's :class:`ServiceTokenInterceptor` refuses every call that does not
carry it in the ``x-briefxai-service-token`` metadata (UNAUTHENTICATED, compared in constant time, counted
as ``briefxai_security_events_total{kind="service_token_rejected"}``), except health checks and
reflection, which probes and tools need. The gateway sends it on each call to a worker
(:func:`token_interceptors`, added by ``channels.create_channel``). With mTLS (``tls.client_ca_file``)
the worker's port already refuses clients without a certificate from that CA; the token then adds nothing
but does no harm.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from briefxai_common.interceptors import metadata_interceptors
from briefxai_common.logging import get_logger
from briefxai_common.security_metrics import AUTH_FAILURES, SECURITY_EVENTS

SERVICE_TOKEN_HEADER = "x-briefxai-service-token"  # noqa: S105  a metadata key, not a secret
#: Methods open to every caller: probes (grpc.health.v1) and tools that list services (reflection).
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
REJECTED_KIND = "service_token_rejected"
log = get_logger(__name__)


def is_open_method(method: str) -> bool:
    return method.startswith(OPEN_METHOD_PREFIXES)


def refusing_handler(
    handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str
) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` (unary or streaming, either way) that fails every call
    with ``code`` and ``message`` before reading any request."""

    async def refuse(_: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(code, message)

    serializers = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse, **serializers)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse, **serializers)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse, **serializers)
    return grpc.unary_unary_rpc_method_handler(refuse, **serializers)


def _metadata_value(details: grpc.HandlerCallDetails, key: str) -> str | None:
    for name, value in details.invocation_metadata or ():
        if name == key:
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return None


class ServiceTokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls (health and reflection aside) without the service token: UNAUTHENTICATED."""

    def __init__(self, service: str, token: str) -> None:
        if not token:
            raise ValueError("a service token must not be empty")
        self.service = service
        self._token = token.encode()
        # The series exists from the start at 0, so that the first refusal is an increase.
        SECURITY_EVENTS.labels(service=service, kind=REJECTED_KIND)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or is_open_method(method):
            return handler
        sent = _metadata_value(handler_call_details, SERVICE_TOKEN_HEADER)
        if sent is not None and hmac.compare_digest(sent.encode(), self._token):
            return handler
        reason = "missing" if sent is None else "wrong"
        SECURITY_EVENTS.labels(service=self.service, kind=REJECTED_KIND).inc()
        AUTH_FAILURES.labels(service=self.service, reason="bad_service_token").inc()
        log.warning(REJECTED_KIND, service=self.service, method=method, reason=reason)
        return refusing_handler(
            handler,
            grpc.StatusCode.UNAUTHENTICATED,
            f"the {self.service} service accepts calls from the BriefXAI gateway only: "
            f"{reason} service token ({SERVICE_TOKEN_HEADER} metadata)",
        )


def token_interceptors(token: str) -> list[Any]:
    """Client interceptors sending ``token`` as the service token; none when it is empty."""
    return metadata_interceptors(((SERVICE_TOKEN_HEADER, token),)) if token else []
