"""The gateway's downstream clients against real servers: a real facets service stopped and restarted on
the same port (the breaker opens, fails fast naming itself, admits one trial when the service is back
while the other callers wait, and the health probe closes it without traffic), and a scripted embedding
servicer served by the shared bootstrap (RetryInfo honoured, the pinned embedding model sent and its
refusal retried, then reported as UNAVAILABLE)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

import grpc
import pytest
import pytest_asyncio
from pydantic_settings import SettingsConfigDict

from briefxai.common.v1 import common_pb2
from briefxai.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from briefxai_common.bootstrap import RunningService, Service, start_service
from briefxai_common.config import ServiceSettings
from briefxai_common.errors import Unavailable
from briefxai_common.resilience import CircuitState
from briefxai_embedding.backends import ModelPinned
from briefxai_facets.server import build_service as build_facets
from briefxai_facets.settings import FacetsSettings
from briefxai_gateway.clients import GrpcEmbeddingClient, GrpcFacetsClient
from briefxai_gateway.convert import conversations_from_pb
from briefxai_gateway.downstream import DownstreamError
from briefxai_gateway.settings import GatewaySettings
from tests.support.ports import free_port

from .conftest import LOCAL, conversations

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def start_facets(port: int) -> RunningService:
    return await start_service(build_facets(FacetsSettings.load(**{**LOCAL, "grpc_port": port})))


def gateway(**values: Any) -> GatewaySettings:
    return GatewaySettings.load(**{**LOCAL, "store_url": "sqlite:///:memory:", **values})


def facets_client(port: int, **breaker: int) -> GrpcFacetsClient:
    """The gateway's facets client on ``port``: no retries, a breaker that opens at the first failure."""
    settings = gateway(
        facets_address=f"127.0.0.1:{port}",
        retry_policies={"facets": {"max_attempts": 1}},
        circuit_breakers={"facets": {"failure_threshold": 1, **breaker}},
    )
    return GrpcFacetsClient(settings)


async def test_the_facets_breaker_through_an_outage() -> None:
    port = free_port()
    facets = await start_facets(port)
    client = facets_client(port, open_timeout_ms=500, probe_interval_ms=600_000)
    breaker = client.downstream.breaker
    batch = conversations_from_pb(conversations(2))
    try:
        assert len(await client.extract(batch, [])) == 2
        await facets.stop(grace=0)
        with pytest.raises(DownstreamError) as down:
            await client.extract(batch, [])
        assert down.value.code == "UNAVAILABLE" and not down.value.circuit_open
        assert breaker.state is CircuitState.OPEN
        with pytest.raises(DownstreamError) as refused:
            await client.extract(batch, [])
        assert refused.value.circuit_open and refused.value.status_code == "UNAVAILABLE"
        assert "circuit breaker facets is open" in refused.value.describe()

        facets = await start_facets(port)
        await asyncio.wait_for(client.downstream.channel.channel_ready(), 20)
        await asyncio.sleep(0.6)  # past the open timeout: the next call is the trial
        assert breaker.state is CircuitState.HALF_OPEN
        # four batches at once, as an analysis sends them: one trial, three waiting for it; none fails
        results = await asyncio.gather(*(client.extract(batch, []) for _ in range(4)))
        assert [len(r) for r in results] == [2, 2, 2, 2]
        assert breaker.state is CircuitState.CLOSED
    finally:
        await client.downstream.close()
        await facets.stop(grace=0)


async def test_the_health_probe_closes_the_breaker_without_traffic() -> None:
    port = free_port()
    facets = await start_facets(port)
    client = facets_client(port, open_timeout_ms=600_000, probe_interval_ms=200)
    breaker = client.downstream.breaker
    try:
        await facets.stop(grace=0)
        with pytest.raises(DownstreamError):
            await client.list_facets()
        assert breaker.state is CircuitState.OPEN
        closed = asyncio.Event()
        breaker.add_listener(lambda _, old, new: closed.set() if new is CircuitState.CLOSED else None)
        facets = await start_facets(port)
        await asyncio.wait_for(closed.wait(), 30)  # long before its 600 s open timeout, with no calls
        assert len(await client.list_facets()) > 0
    finally:
        await client.downstream.close()
        await facets.stop(grace=0)


# ---- a scripted embedding service ----------------------------------------------------------------------


class ScriptedSettings(ServiceSettings):
    section: ClassVar[str] = "scripted"
    model_config = SettingsConfigDict(env_prefix="BRIEFXAI_SCRIPTED_", extra="forbid")


class ScriptedEmbedding(embedding_pb2_grpc.EmbeddingServiceServicer):
    """Answers with ``model`` (4-dim zero-free vectors); ``faults`` are raised first, one per call."""

    def __init__(self) -> None:
        self.faults: list[Exception] = []
        self.requests: list[tuple[float, embedding_pb2.EmbedTextsRequest]] = []

    async def GetModelInfo(self, request: Any, context: Any) -> embedding_pb2.GetModelInfoResponse:
        return embedding_pb2.GetModelInfoResponse(model="local", dim=4, max_texts_per_request=16)

    async def EmbedTexts(self, request: Any, context: Any) -> embedding_pb2.EmbedTextsResponse:
        self.requests.append((time.monotonic(), request))
        if self.faults:
            raise self.faults.pop(0)
        return embedding_pb2.EmbedTextsResponse(
            vectors=ones(len(request.texts)), model=request.model if request.HasField("model") else "local"
        )

    async def StreamEmbedTexts(
        self, request_iterator: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[embedding_pb2.StreamEmbedTextsResponse]:
        offset = 0
        async for chunk in request_iterator:
            yield embedding_pb2.StreamEmbedTextsResponse(offset=offset, vectors=ones(len(chunk.texts)))
            offset += len(chunk.texts)

    async def ClearCache(self, request: Any, context: Any) -> embedding_pb2.ClearCacheResponse:
        return embedding_pb2.ClearCacheResponse(cleared_entries=0)


def ones(count: int) -> common_pb2.PackedVectors:
    """``count`` 4-dim vectors of float32 1.0."""
    return common_pb2.PackedVectors(data=b"\x00\x00\x80\x3f" * 4 * count, dim=4, count=count)


@pytest_asyncio.fixture(loop_scope="session")
async def scripted() -> AsyncIterator[tuple[ScriptedEmbedding, RunningService]]:
    servicer = ScriptedEmbedding()

    def register(server: grpc.aio.Server) -> Sequence[str]:
        embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(servicer, server)
        return ["briefxai.embedding.v1.EmbeddingService"]

    running = await start_service(Service("scripted", ScriptedSettings.load(**LOCAL), register))
    yield servicer, running
    await running.stop(grace=0)


async def test_retry_info_is_waited_out(scripted: tuple[ScriptedEmbedding, RunningService]) -> None:
    servicer, running = scripted
    client = GrpcEmbeddingClient(
        gateway(
            embedding_address=running.address,
            retry_policies={"embedding": {"max_attempts": 3, "initial_delay_ms": 0, "max_delay_ms": 5000}},
        )
    )
    try:
        servicer.faults = [Unavailable("warming up", retry_after_seconds=0.4)]
        batch = await client.embed(["a", "b"])
        assert batch.vectors.count == 2 and batch.model == "local"
        (first, _), (second, _) = servicer.requests[-2:]
        assert second - first >= 0.35  # the backoff alone (0 ms) would not have waited
    finally:
        await client.downstream.close()


async def test_the_pinned_model_is_sent_and_its_refusal_is_retried_later(
    scripted: tuple[ScriptedEmbedding, RunningService],
) -> None:
    servicer, running = scripted
    client = GrpcEmbeddingClient(
        gateway(
            embedding_address=running.address,
            retry_policies={"embedding": {"max_attempts": 2, "initial_delay_ms": 0, "max_delay_ms": 100}},
        )
    )

    def pinned() -> ModelPinned:
        return ModelPinned(
            "pinned to 'remote', which is unavailable; the fallback would serve 'local'",
            pinned="remote",
            serving="local",
            retry_after_seconds=0.01,
        )

    try:
        servicer.faults = [pinned()]
        batch = await client.embed(["a"], model="remote")
        assert batch.model == "remote"
        assert servicer.requests[-1][1].model == "remote"
        servicer.faults = [pinned(), pinned()]
        with pytest.raises(DownstreamError) as refused:
            await client.embed(["a"], model="remote")
        # retryable later, like an outage; the message names both models
        assert refused.value.code == "UNAVAILABLE" and refused.value.unavailable
        assert "'remote'" in refused.value.detail and "'local'" in refused.value.detail
        assert client.downstream.breaker.state is CircuitState.CLOSED  # the service answered
    finally:
        await client.downstream.close()
