"""gRPC clients of the facets, embedding and clustering services.

Each downstream service gets one channel (``create_channel``: round_robin over every address a
``dns:///`` name resolves to, metrics and tracing interceptors, 256 MiB messages), one circuit
breaker, a deadline per call from config, and tenacity retries with full jitter for UNAVAILABLE,
DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED. The breaker sits inside the retry loop, so it sees every
attempt and an open breaker ends the retries at once. Calls in flight per service are bounded
(``*_max_concurrent_calls``): extra calls wait in the gateway, not in the server's queue where their
deadline would already be running. Failures leave as ``DownstreamError``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import grpc

from briefxai.clustering.v1 import clustering_pb2, clustering_pb2_grpc
from briefxai.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from briefxai.facets.v1 import facets_pb2, facets_pb2_grpc
from briefxai_common.channels import create_channel
from briefxai_common.logging import get_logger
from briefxai_common.resilience import CircuitBreaker, CircuitOpenError, CircuitState, RetryPolicy, retry_call

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

RETRYABLE_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)


def is_retryable(exc: BaseException) -> bool:
    """Transient gRPC failures: the ones worth retrying and the only ones a breaker counts."""
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() in RETRYABLE_CODES


class Downstream:
    """One downstream service: channel, breaker, retry policy."""

    def __init__(
        self, service: str, address: str, settings: GatewaySettings, max_concurrent_calls: int
    ) -> None:
        self.service = service
        self.address = address
        # Calls beyond this wait here rather than queue at the server, where their deadline would run.
        self._slots = asyncio.Semaphore(max_concurrent_calls)
        self.channel = create_channel(address, settings.max_message_mb)
        self.breaker = CircuitBreaker(
            service,
            failure_threshold=settings.breaker.failure_threshold,
            reset_timeout=settings.breaker.reset_timeout_seconds,
            half_open_max_calls=settings.breaker.half_open_max_calls,
            is_failure=is_retryable,
            on_state_change=self._state_changed,
        )
        self.policy = RetryPolicy(
            max_attempts=settings.retry.max_attempts,
            initial_backoff=settings.retry.initial_backoff_seconds,
            max_backoff=settings.retry.max_backoff_seconds,
        )
        metrics.watch_breaker(self.breaker)

    def _state_changed(self, breaker: CircuitBreaker, old: CircuitState, new: CircuitState) -> None:
        log.warning("circuit_breaker", service=self.service, old=old.label, new=new.label)

    def _on_retry(self, attempt: int, exc: BaseException, sleep: float) -> None:
        metrics.DOWNSTREAM_RETRIES.labels(service=self.service).inc()
        code = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
        log.info(
            "downstream_retry",
            service=self.service,
            attempt=attempt,
            code=code,
            sleep_seconds=round(sleep, 3),
        )

    async def call(self, method: Callable[..., Awaitable[T]], request: Any, deadline: float) -> T:
        """``method(request, timeout=deadline)`` through breaker and retries."""

        async def attempt() -> T:
            async with self._slots:
                return await self.breaker.call(method, request, timeout=deadline)

        return await self._retried(attempt)

    async def _retried(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()`` with retries; gRPC failures and an open breaker leave as DownstreamError."""
        try:
            return await retry_call(
                attempt, policy=self.policy, is_retryable=is_retryable, on_retry=self._on_retry
            )
        except CircuitOpenError as exc:
            metrics.count_downstream_error()
            raise DownstreamError(self.service, "UNAVAILABLE", str(exc), circuit_open=True) from exc
        except grpc.aio.AioRpcError as exc:
            metrics.count_downstream_error()
            raise DownstreamError(self.service, exc.code().name, exc.details() or "") from exc

    async def call_stream(
        self, method: Callable[..., Awaitable[T]], requests: Callable[[], AsyncIterator[Any]], deadline: float
    ) -> T:
        """A client-streaming ``method(requests(), timeout=deadline)`` through breaker and retries.

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

            async with self._slots:
                try:
                    return await self.breaker.call(method, recorded(), timeout=deadline)
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if failure and not (task is not None and task.cancelling()):
                        raise failure[0] from None
                    raise

        return await self._retried(attempt)

    async def close(self) -> None:
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
        self._info: EmbeddingModelInfo | None = None

    async def model_info(self) -> EmbeddingModelInfo:
        if self._info is None:
            response = await self.downstream.call(
                self._stub.GetModelInfo, embedding_pb2.GetModelInfoRequest(), self._metadata_deadline
            )
            self._info = EmbeddingModelInfo(
                model=response.model,
                dim=response.dim,
                max_texts_per_request=response.max_texts_per_request or 1024,
                max_chars_per_text=response.max_chars_per_text or 0,
            )
        return self._info

    async def embed(self, texts: Sequence[str], max_tokens: int = 0) -> EmbeddedBatch:
        """Vectors of ``texts``, each cut at ``max_tokens`` model tokens (0 = the model's maximum)."""
        info = await self.model_info()
        step = max(1, info.max_texts_per_request)
        parts: list[bytes] = []
        dim = 0
        model = info.model
        truncated = 0
        for start in range(0, len(texts), step):
            chunk = list(texts[start : start + step])
            response = await self.downstream.call(
                self._stub.EmbedTexts,
                embedding_pb2.EmbedTextsRequest(texts=chunk, max_tokens=max_tokens),
                self._deadline,
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
            model = response.model or model
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        return EmbeddedBatch(PackedBatch(data=data, dim=dim, count=len(texts)), model, truncated)


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
