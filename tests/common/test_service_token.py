"""The shared service token on a real worker (the clustering service, through the shared bootstrap):
calls without it or with a wrong one fail UNAUTHENTICATED, with it they are served; health and reflection
stay open; ``reflection_enabled: false`` removes reflection; a changed token needs a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from prometheus_client import REGISTRY

from briefxai.clustering.v1 import clustering_pb2, clustering_pb2_grpc
from briefxai_clustering.server import build_service
from briefxai_clustering.settings import ClusteringSettings
from briefxai_common.bootstrap import RunningService, reloader, start_service
from briefxai_common.channels import create_channel
from briefxai_common.reflection import V1_SERVICE_NAME
from briefxai_common.service_auth import SERVICE_TOKEN_HEADER
from tests.support.services import local_settings

TOKEN = "a-long-shared-secret-for-the-test"
CLUSTERING = "briefxai.clustering.v1.ClusteringService"


def settings(**values: Any) -> ClusteringSettings:
    return local_settings(ClusteringSettings, warm_up_map=False, compute_threads=1, **values)


@pytest.fixture
async def guarded() -> AsyncIterator[RunningService]:
    running = await start_service(build_service(settings(service_token=TOKEN)))
    yield running
    await running.stop(grace=0)


def rejections() -> float:
    value = REGISTRY.get_sample_value(
        "briefxai_security_events_total", {"service": "clustering", "kind": "service_token_rejected"}
    )
    return value or 0.0


async def get_limits(channel: grpc.aio.Channel, token: str | None) -> clustering_pb2.GetLimitsResponse:
    metadata = ((SERVICE_TOKEN_HEADER, token),) if token is not None else None
    stub = clustering_pb2_grpc.ClusteringServiceStub(channel)
    return await stub.GetLimits(clustering_pb2.GetLimitsRequest(), metadata=metadata, timeout=10)


async def stream_cluster(channel: grpc.aio.Channel) -> clustering_pb2.StreamClusterEmbeddingsResponse:
    """A client-streaming call without the token (no message needed: it is refused first)."""

    async def nothing() -> AsyncIterator[clustering_pb2.StreamClusterEmbeddingsRequest]:
        return
        yield

    stub = clustering_pb2_grpc.ClusteringServiceStub(channel)
    return await stub.StreamClusterEmbeddings(nothing(), timeout=10)


async def list_services(channel: grpc.aio.Channel) -> set[str]:
    call = channel.stream_stream(
        f"/{V1_SERVICE_NAME}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )

    async def requests() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async for reply in call(requests()):
        return {service.name for service in reply.list_services_response.service}
    raise AssertionError("no reflection reply")


async def test_calls_without_the_right_token_are_refused(guarded: RunningService) -> None:
    before = rejections()
    async with grpc.aio.insecure_channel(guarded.address) as channel:
        for token in (None, "wrong", TOKEN + "x", ""):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await get_limits(channel, token)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, token
            assert "gateway only" in (refused.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stream_cluster(channel)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert (await get_limits(channel, TOKEN)).max_vectors > 0
    assert rejections() == before + 5


async def test_create_channel_sends_the_token(guarded: RunningService) -> None:
    channel = create_channel(guarded.address, service_token=TOKEN)
    try:
        assert (await get_limits(channel, None)).max_vectors > 0
    finally:
        await channel.close(None)


async def test_health_and_reflection_stay_open(guarded: RunningService) -> None:
    async with grpc.aio.insecure_channel(guarded.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=CLUSTERING), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert CLUSTERING in await list_services(channel)


async def test_without_a_token_the_worker_serves_anyone_and_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    running = await start_service(build_service(settings()))
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            assert (await get_limits(channel, None)).max_vectors > 0
    finally:
        await running.stop(grace=0)
    assert "open_to_any_caller" in capsys.readouterr().out


async def test_reflection_can_be_turned_off() -> None:
    running = await start_service(build_service(settings(reflection_enabled=False)))
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await list_services(channel)
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert (await get_limits(channel, None)).max_vectors > 0
    finally:
        await running.stop(grace=0)


async def test_a_new_token_or_tls_needs_a_restart() -> None:
    service = build_service(settings(service_token=TOKEN))
    reload = reloader(
        service,
        lambda: settings(service_token="another", reflection_enabled=False),
        configure_logs=False,
    )
    outcome = await reload.reload()
    assert outcome.accepted
    assert {"service_token", "reflection_enabled"} <= set(outcome.needs_restart)
    assert reload.current.service_token == TOKEN
