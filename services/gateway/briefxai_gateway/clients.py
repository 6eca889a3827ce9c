"""gRPC clients of the facets, embedding and clustering services.

Each downstream service gets one channel (``create_channel``: round_robin over every address a
``dns:///`` name resolves to, metrics and tracing interceptors, 256 MiB messages), one circuit breaker
(``circuit_breakers.<service>``) and one retry policy (``retry_policies.<service>``), both from
:mod:`briefxai_common.resilience`: which codes are retried and counted by the breaker is decided there
(every call here is idempotent, so DEADLINE_EXCEEDED is retried too), a ``google.rpc.RetryInfo`` in an
error is honoured, and ``*_deadline_seconds`` is the deadline of one call *with* its retries: each
attempt gets the time left. The breaker sits inside the retry loop, so it sees every attempt and an open
breaker ends the retries at once; while the breaker is not closed, the downstream's ``grpc.health.v1``
status is probed (``probe_interval_ms``), and SERVING counts as a successful trial. Calls in flight per
service are bounded (``*_max_concurrent_calls``): extra calls wait in the gateway, not in the server's
queue where their deadline would already be running. Failures leave as ``DownstreamError``; an open
breaker as UNAVAILABLE whose message names the breaker.

The embedding service refuses (FAILED_PRECONDITION, ``ErrorInfo.reason`` ``EMBEDDING_MODEL_PINNED``) a
batch pinned to a model it cannot serve now (its remote model is down and it would fail over to another
one): that is retried like UNAVAILABLE, and leaves as UNAVAILABLE, to be tried again later.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from briefxai.clustering.v1 import clustering_pb2, clustering_pb2_grpc
from briefxai.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from briefxai.facets.v1 import facets_pb2, facets_pb2_grpc
from briefxai_common.channels import create_channel
from briefxai_common.logging import get_logger
from briefxai_common.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    Retrier,
    grpc_breaker_failure,
    grpc_retryable,
    time_left,
)

from . import metrics
from .convert import (
    clustering_chunk_to_pb,
    clustering_header_to_pb,
    clustering_response_from_pb,
    conversation_to_pb,
    facet_definition_from_pb,
    facet_value_from_pb,
)
from .downstream import ClusteringLimits, DownstreamError, Downstreams, EmbeddedBatch, EmbeddingModelInfo
from .models import ClusteringInput, ClusteringOutput, Conversation, FacetDefinition, FacetValue, PackedBatch
from .settings import GatewaySettings

log = get_logger(__name__)
T = TypeVar("T")

STATUS_DETAILS_KEY = "grpc-status-details-bin"
MODEL_PINNED = "EMBEDDING_MODEL_PINNED"  # ErrorInfo.reason of the embedding service's refusal


def _status(exc: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    """The google.rpc.Status an error carries in its trailers, if any."""
    for key, value in exc.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except Exception:  # a malformed trailer is no detail: the status code still stands
                log.warning("status_details_unreadable", code=exc.code().name)
    return None


def error_reason(exc: grpc.aio.AioRpcError) -> str:
    """The ``google.rpc.ErrorInfo`` reason of an error ("" when it has none)."""
    status = _status(exc)
    info = error_details_pb2.ErrorInfo()
    for detail in status.details if status is not None else ():
        if detail.Unpack(info):
            return str(info.reason)
    return ""


def retry_delay(exc: BaseException) -> float | None:
    """Seconds a ``google.rpc.RetryInfo`` in the error asks to wait; None when there is none."""
    if not isinstance(exc, grpc.aio.AioRpcError):
        return None
    status = _status(exc)
    info = error_details_pb2.RetryInfo()
    for detail in status.details if status is not None else ():
        if detail.Unpack(info):
            return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


def pinned_model_refused(exc: BaseException) -> bool:
    return (
        isinstance(exc, grpc.aio.AioRpcError)
        and exc.code() is grpc.StatusCode.FAILED_PRECONDITION
        and error_reason(exc) == MODEL_PINNED
    )


def is_retryable(exc: BaseException, idempotent: bool = True) -> bool:
    """Transient gRPC failures (:func:`briefxai_common.resilience.grpc_retryable`), and the embedding
    service's refusal of a batch pinned to a model it cannot serve now."""
    if not isinstance(exc, grpc.aio.AioRpcError):
        return False
    return grpc_retryable(exc.code().name, idempotent=idempotent) or pinned_model_refused(exc)


def is_breaker_failure(exc: BaseException) -> bool:
    return isinstance(exc, grpc.aio.AioRpcError) and grpc_breaker_failure(exc.code().name)


class Downstream:
    """One downstream service: channel, breaker (probed by health checks while not closed), retries."""

    def __init__(
        self, service: str, address: str, settings: GatewaySettings, max_concurrent_calls: int
    ) -> None:
        self.service = service
        self.address = address
        # Calls beyond this wait here rather than queue at the server, where their deadline would run.
        self._slots = asyncio.Semaphore(max_concurrent_calls)
        self.channel = create_channel(
            address, settings.max_message_mb, tls=settings.tls, service_token=settings.service_token
        )
        self._health = health_pb2_grpc.HealthStub(self.channel)
        self._probe_deadline = settings.metadata_deadline_seconds
        breaker: Any = getattr(settings.circuit_breakers, service)
        self.breaker: CircuitBreaker = breaker.breaker(
            service, is_failure=is_breaker_failure, probe=self.probe
        )
        self.retrier = Retrier(
            metrics.SERVICE,
            service,
            getattr(settings.retry_policies, service).policy(),
            is_retryable=is_retryable,
            retry_after=retry_delay,
            on_retry=self._on_retry,
        )
        metrics.watch_breaker(self.breaker)

    async def probe(self) -> bool:
        """Whether the downstream's grpc.health.v1 status is SERVING (the breaker's active health)."""
        reply = await self._health.Check(health_pb2.HealthCheckRequest(), timeout=self._probe_deadline)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def _on_retry(self, attempt: int, exc: BaseException, sleep: float) -> None:
        metrics.DOWNSTREAM_RETRIES.labels(service=self.service).inc()

    async def call(
        self, method: Callable[..., Awaitable[T]], request: Any, deadline: float, *, idempotent: bool = True
    ) -> T:
        """``method(request)`` through breaker and retries, all within ``deadline`` seconds."""

        async def attempt() -> T:
            async with self.breaker.guarded(), self._slots:
                return await method(request, timeout=time_left())

        return await self._retried(attempt, deadline, idempotent)

    async def _retried(self, attempt: Callable[[], Awaitable[T]], deadline: float, idempotent: bool) -> T:
        """``attempt()`` with retries; gRPC failures and an open breaker leave as DownstreamError."""
        try:
            return await self.retrier.call(
                attempt, deadline=deadline, is_retryable=lambda exc: is_retryable(exc, idempotent)
            )
        except CircuitOpenError as exc:
            metrics.count_downstream_error()
            raise DownstreamError(self.service, "UNAVAILABLE", str(exc), circuit_open=True) from exc
        except grpc.aio.AioRpcError as exc:
            metrics.count_downstream_error()
            code = "UNAVAILABLE" if pinned_model_refused(exc) else exc.code().name
            raise DownstreamError(self.service, code, exc.details() or "") from exc

    async def call_stream(
        self,
        method: Callable[..., Awaitable[T]],
        requests: Callable[[], AsyncIterator[Any]],
        deadline: float,
        *,
        idempotent: bool = True,
    ) -> T:
        """A client-streaming ``method(requests())`` through breaker and retries, within ``deadline``.

        Each attempt calls ``requests()`` for a fresh iterator, so a retry resends from the first message.
        The iterator is passed to the call (not written with ``call.write()``, which the OpenTelemetry aio
        client interceptor breaks). When it raises, grpc cancels the call; its exception is raised here.
        """

        async def attempt() -> T:
            failure: list[Exception] = []

            async def recorded() -> AsyncIterator[Any]:
                try:
                    async for request in requests():
                        yield request
                except Exception as exc:
                    failure.append(exc)
                    raise

            async with self.breaker.guarded(), self._slots:
                try:
                    return await method(recorded(), timeout=time_left())
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if failure and not (task is not None and task.cancelling()):
                        raise failure[0] from None
                    raise

        return await self._retried(attempt, deadline, idempotent)

    async def close(self) -> None:
        await self.breaker.close()
        await self.channel.close(None)


class _Cached(Generic[T]):
    """The last answer of a metadata call (ListFacets, GetLimits), reused for ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._value: tuple[float, T] | None = None

    async def get(self, fetch: Callable[[], Awaitable[T]]) -> T:
        now = time.monotonic()
        if self._value is not None and now - self._value[0] < self.seconds:
            return self._value[1]
        value = await fetch()
        self._value = (now, value)
        return value


class GrpcFacetsClient:
    def __init__(self, settings: GatewaySettings) -> None:
        self.downstream = Downstream(
            "facets", settings.facets_address, settings, settings.facets_max_concurrent_calls
        )
        self._stub = facets_pb2_grpc.FacetsServiceStub(self.downstream.channel)
        self._deadline = settings.facets_deadline_seconds
        self._metadata_deadline = settings.metadata_deadline_seconds
        self._listing: _Cached[facets_pb2.ListFacetsResponse] = _Cached(settings.metadata_cache_seconds)

    async def _list(self) -> facets_pb2.ListFacetsResponse:
        return await self._listing.get(
            lambda: self.downstream.call(
                self._stub.ListFacets, facets_pb2.ListFacetsRequest(), self._metadata_deadline
            )
        )

    async def list_facets(self) -> list[FacetDefinition]:
        return [facet_definition_from_pb(d) for d in (await self._list()).facets]

    async def providers(self) -> list[str]:
        return list((await self._list()).providers)

    async def extract(
        self, conversations: Sequence[Conversation], facets: Sequence[str]
    ) -> list[list[FacetValue]]:
        result: list[list[FacetValue]] = []
        # Calls as large as the facets service takes (its ListFacets says how many).
        call_size = max(1, (await self._list()).max_conversations_per_request)
        for start in range(0, len(conversations), call_size):
            chunk = conversations[start : start + call_size]
            request = facets_pb2.ExtractFacetsRequest(
                conversations=[conversation_to_pb(c) for c in chunk], facets=list(facets)
            )
            response = await self.downstream.call(self._stub.ExtractFacets, request, self._deadline)
            if len(response.results) != len(chunk):
                raise DownstreamError(
                    "facets", "INTERNAL", f"{len(response.results)} results for {len(chunk)} conversations"
                )
            for conversation, item in zip(chunk, response.results, strict=True):
                if item.conversation_id and item.conversation_id != conversation.id:
                    raise DownstreamError("facets", "INTERNAL", "results out of order")
                result.append([facet_value_from_pb(v) for v in item.values])
        return result


class GrpcEmbeddingClient:
    def __init__(self, settings: GatewaySettings) -> None:
        self.downstream = Downstream(
            "embedding", settings.embedding_address, settings, settings.embedding_max_concurrent_calls
        )
        self._stub = embedding_pb2_grpc.EmbeddingServiceStub(self.downstream.channel)
        self._deadline = settings.embedding_deadline_seconds
        self._metadata_deadline = settings.metadata_deadline_seconds
        self._info: _Cached[EmbeddingModelInfo] = _Cached(settings.metadata_cache_seconds)

    async def model_info(self) -> EmbeddingModelInfo:
        """The model the embedding service serves now (reused ``metadata_cache_seconds``: with a
        fallback configured it changes while the remote endpoint is down)."""

        async def fetch() -> EmbeddingModelInfo:
            response = await self.downstream.call(
                self._stub.GetModelInfo, embedding_pb2.GetModelInfoRequest(), self._metadata_deadline
            )
            return EmbeddingModelInfo(
                model=response.model,
                dim=response.dim,
                max_texts_per_request=response.max_texts_per_request or 1024,
                max_chars_per_text=response.max_chars_per_text or 0,
            )

        return await self._info.get(fetch)

    async def clear_cache(self) -> int:
        """Has the embedding service drop its cache of vectors (a user's data was erased); returns how
        many entries it held. With several replicas only the one that answers is cleared."""
        response = await self.downstream.call(
            self._stub.ClearCache, embedding_pb2.ClearCacheRequest(), self._metadata_deadline
        )
        return int(response.cleared_entries)

    async def embed(self, texts: Sequence[str], max_tokens: int = 0, model: str = "") -> EmbeddedBatch:
        """Vectors of ``texts``, each cut at ``max_tokens`` model tokens (0 = the model's maximum).

        ``model``: the embedding model the analysis is pinned to (the one that embedded its first batch);
        the service refuses to answer with another one, and that refusal leaves as UNAVAILABLE (try again
        later). Empty: whichever model the service serves now."""
        info = await self.model_info()
        step = max(1, info.max_texts_per_request)
        parts: list[bytes] = []
        dim = 0
        served = model or info.model
        truncated = 0
        for start in range(0, len(texts), step):
            chunk = list(texts[start : start + step])
            request = embedding_pb2.EmbedTextsRequest(texts=chunk, max_tokens=max_tokens)
            if model:
                request.model = model
            response = await self.downstream.call(self._stub.EmbedTexts, request, self._deadline)
            if model and response.model and response.model != model:
                raise DownstreamError(
                    "embedding",
                    "INTERNAL",
                    f"answered with model {response.model!r} for a batch pinned to {model!r}",
                )
            vectors = response.vectors
            if vectors.count != len(chunk) or len(vectors.data) != vectors.count * vectors.dim * 4:
                raise DownstreamError(
                    "embedding",
                    "INTERNAL",
                    f"{vectors.count} vectors ({len(vectors.data)} bytes) for {len(chunk)} texts",
                )
            if dim and vectors.dim != dim:
                raise DownstreamError(
                    "embedding", "INTERNAL", f"vector dim changed from {dim} to {vectors.dim}"
                )
            dim = vectors.dim
            parts.append(vectors.data)
            truncated += sum(1 for flag in response.truncated if flag)
            if response.model and served != response.model and start:
                raise DownstreamError(
                    "embedding",
                    "UNAVAILABLE",
                    f"the model changed from {served!r} to {response.model!r} within one batch",
                )
            served = response.model or served
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        return EmbeddedBatch(PackedBatch(data=data, dim=dim, count=len(texts)), served, truncated)


class GrpcClusteringClient:
    def __init__(self, settings: GatewaySettings) -> None:
        self.downstream = Downstream(
            "clustering", settings.clustering_address, settings, settings.clustering_max_concurrent_calls
        )
        self._stub = clustering_pb2_grpc.ClusteringServiceStub(self.downstream.channel)
        self._deadline = settings.clustering_deadline_seconds
        self._metadata_deadline = settings.metadata_deadline_seconds
        self._limits: _Cached[ClusteringLimits] = _Cached(settings.metadata_cache_seconds)

    async def limits(self) -> ClusteringLimits:
        async def fetch() -> ClusteringLimits:
            reply = await self.downstream.call(
                self._stub.GetLimits, clustering_pb2.GetLimitsRequest(), self._metadata_deadline
            )
            return ClusteringLimits(reply.max_k, reply.max_hierarchy_depth, reply.max_vectors)

        return await self._limits.get(fetch)

    async def cluster(self, data: ClusteringInput) -> ClusteringOutput:
        """One ``StreamClusterEmbeddings`` call: a header, then one message per chunk of ``data``, made
        as the call sends them (the header waits for the first chunk, which gives the dim)."""

        async def messages() -> AsyncIterator[clustering_pb2.StreamClusterEmbeddingsRequest]:
            header_sent = False
            async for chunk in data.chunks():
                if not header_sent:
                    yield clustering_header_to_pb(data, chunk.vectors.dim)
                    header_sent = True
                message = clustering_chunk_to_pb(chunk)
                del chunk
                yield message
                del message
            if not header_sent:
                yield clustering_header_to_pb(data, 0)

        response = await self.downstream.call_stream(
            self._stub.StreamClusterEmbeddings, messages, self._deadline
        )
        output = clustering_response_from_pb(response.result)
        if len(output.assignments) != data.count:
            raise DownstreamError(
                "clustering",
                "INTERNAL",
                f"{len(output.assignments)} assignments for {data.count} conversations",
            )
        return output


class GrpcDownstreams:
    """The three gRPC clients, with their breakers exposed for health and metrics."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.facets = GrpcFacetsClient(settings)
        self.embedding = GrpcEmbeddingClient(settings)
        self.clustering = GrpcClusteringClient(settings)
        self.clients = Downstreams(self.facets, self.embedding, self.clustering)

    @property
    def all(self) -> list[Downstream]:
        return [self.facets.downstream, self.embedding.downstream, self.clustering.downstream]

    def breakers(self) -> dict[str, CircuitBreaker]:
        return {d.service: d.breaker for d in self.all}

    async def close(self) -> None:
        for downstream in self.all:
            await downstream.close()
