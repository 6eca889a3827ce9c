"""The shared bootstrap, exercised with a small real servicer over real sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic_settings import SettingsConfigDict

from briefxai.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from briefxai_common.bootstrap import RunningService, Service, start_service
from briefxai_common.config import ServiceSettings
from briefxai_common.errors import InvalidArgument
from tests.support.errors import field_violations
from tests.support.http import http_get
from tests.support.ports import free_port
from tests.support.services import assert_serving

EMBEDDING_SERVICE = embedding_pb2.DESCRIPTOR.services_by_name["EmbeddingService"].full_name


class ProbeSettings(ServiceSettings):
    section: ClassVar[str] = "probe"
    model_config = SettingsConfigDict(env_prefix="BRIEFXAI_PROBE_", env_nested_delimiter="__", extra="forbid")


class SlowEchoServicer(embedding_pb2_grpc.EmbeddingServiceServicer):
    """EmbedTexts waits for texts[0] seconds; a text "bad" is rejected with a field violation."""

    async def EmbedTexts(self, request: Any, context: Any) -> embedding_pb2.EmbedTextsResponse:
        if "bad" in request.texts:
            raise InvalidArgument(f"texts[{list(request.texts).index('bad')}]", "must not be 'bad'")
        await asyncio.sleep(float(request.texts[0]))
        return embedding_pb2.EmbedTextsResponse(model="probe")


def build(start_gate: asyncio.Event | None = None) -> Service:
    async def start() -> None:
        if start_gate is not None:
            await start_gate.wait()

    def register(server: grpc.aio.Server) -> list[str]:
        embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(SlowEchoServicer(), server)  # type: ignore[abstract]
        return [EMBEDDING_SERVICE]

    settings = ProbeSettings.load(host="127.0.0.1", grpc_port=0, http_port=0, grace_period_seconds=5)
    return Service("probe", settings, register, start=start, health_info=lambda: {"model": "probe"})


@pytest.fixture
async def running() -> AsyncIterator[RunningService]:
    service = await start_service(build())
    yield service
    await service.stop(grace=0)


async def test_health_is_serving_for_overall_and_service(running: RunningService) -> None:
    await assert_serving(running.address, EMBEDDING_SERVICE)


async def test_not_serving_while_starting_then_serving() -> None:
    gate = asyncio.Event()
    service = build(gate)
    service.settings.grpc_port = free_port()
    service.settings.http_port = free_port()
    starting = asyncio.create_task(start_service(service))
    address = f"127.0.0.1:{service.settings.grpc_port}"
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        await channel.channel_ready()
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), wait_for_ready=True)
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        status, body = await asyncio.to_thread(http_get, service.settings.http_port, "/health")
        assert status == 503
        assert json.loads(body)["status"] == "NOT_SERVING"
        gate.set()
        running = await starting
        try:
            watch = stub.Watch(health_pb2.HealthCheckRequest(service=""))
            first = await watch.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            stopping = asyncio.create_task(running.stop(grace=1))
            second = await watch.read()
            assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()
            await stopping
        finally:
            await running.stop(grace=0)


async def test_invalid_argument_carries_field_violation_and_service_keeps_serving(
    running: RunningService,
) -> None:
    async with grpc.aio.insecure_channel(running.address) as channel:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["0", "bad"]))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(caught.value)[0][0] == "texts[1]"
        reply = await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["0"]))
        assert reply.model == "probe"


async def test_http_health_and_metrics(running: RunningService) -> None:
    async with grpc.aio.insecure_channel(running.address) as channel:
        await embedding_pb2_grpc.EmbeddingServiceStub(channel).EmbedTexts(
            embedding_pb2.EmbedTextsRequest(texts=["0"])
        )
    status, body = await asyncio.to_thread(http_get, running.http_port, "/health")
    assert status == 200
    health = json.loads(body)
    assert health["status"] == "SERVING"
    assert health["service"] == "probe"
    assert health["model"] == "probe"
    assert health["uptime_seconds"] >= 0
    assert health["memory_usage_mb"] > 0
    status, body = await asyncio.to_thread(http_get, running.http_port, "/metrics")
    assert status == 200
    text = body.decode()
    assert 'grpc_server_handled_total{grpc_code="OK",grpc_method="EmbedTexts"' in text


async def test_graceful_stop_finishes_in_flight_call_and_refuses_new_ones() -> None:
    running = await start_service(build())
    async with grpc.aio.insecure_channel(running.address) as channel:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        in_flight = asyncio.ensure_future(stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["0.5"])))
        await asyncio.sleep(0.1)
        await running.stop(grace=5)
        reply = await in_flight
        assert reply.model == "probe"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["0"]), timeout=2)
        assert caught.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


async def test_reflection_lists_services(running: RunningService) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async with grpc.aio.insecure_channel(running.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def requests() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        async for reply in stub.ServerReflectionInfo(requests()):
            names = {service.name for service in reply.list_services_response.service}
            assert EMBEDDING_SERVICE in names
            assert "grpc.health.v1.Health" in names
            break
