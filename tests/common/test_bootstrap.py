"""The shared bootstrap, exercised with a small real servicer over real sockets: gRPC health, the HTTP
side port (/health, /readyz, /livez, /metrics, /debug/profile), graceful stop, error mapping, logs."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import grpc
import pytest
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic_settings import SettingsConfigDict

from briefxai.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from briefxai_common.bootstrap import RunningService, Service, start_service
from briefxai_common.config import ServiceSettings
from briefxai_common.errors import InvalidArgument
from briefxai_common.health import HealthReport, HealthSource
from briefxai_common.logging import configure_logging, reset_logging
from tests.support.errors import field_violations
from tests.support.http import get_json, http_get
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


def build(
    start_gate: asyncio.Event | None = None, health_info: HealthSource | None = None, **settings_values: Any
) -> Service:
    async def start() -> None:
        if start_gate is not None:
            await start_gate.wait()

    def register(server: grpc.aio.Server) -> list[str]:
        embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(SlowEchoServicer(), server)  # type: ignore[abstract]
        return [EMBEDDING_SERVICE]

    settings = ProbeSettings.load(
        host="127.0.0.1", grpc_port=0, http_port=0, grace_period_seconds=5, **settings_values
    )
    if health_info is None:

        def health_info() -> HealthReport:
            return HealthReport(details={"model": "probe"})

    return Service("probe", settings, register, start=start, health_info=health_info)


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
        port = service.settings.http_port
        status, health = await get_json(port, "/health")
        assert status == 503
        assert (health["status"], health["grpc_status"], health["phase"]) == (
            "unhealthy",
            "NOT_SERVING",
            "starting",
        )
        assert await get_json(port, "/readyz") == (503, {"status": "not_ready", "reasons": ["starting"]})
        assert await get_json(port, "/livez") == (200, {"status": "alive"})
        gate.set()
        running = await starting
        try:
            assert await get_json(port, "/readyz") == (200, {"status": "ready"})
            watch = stub.Watch(health_pb2.HealthCheckRequest(service=""))
            first = await watch.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            # A long grace period: the open Watch stream must not hold the stop for all of it.
            stopping = asyncio.create_task(running.stop(grace=60))
            second = await watch.read()
            assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
            assert await watch.read() is grpc.aio.EOF  # type: ignore[attr-defined]
            assert await watch.code() == grpc.StatusCode.OK
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
    status, health = await get_json(running.http_port, "/health")
    assert status == 200
    assert (health["status"], health["grpc_status"], health["phase"]) == ("healthy", "SERVING", "serving")
    assert health["service"] == "probe"
    assert health["model"] == "probe"
    assert health["uptime_seconds"] >= 0
    assert health["memory_usage_mb"] > 0 and health["cpu_seconds"] > 0
    assert health["active_sessions"] == 0
    # Fields that do not apply to this service are left out.
    assert not {"database_status", "providers", "circuit_breakers", "reasons"} & set(health)
    assert await get_json(running.http_port, "/readyz") == (200, {"status": "ready"})
    assert await get_json(running.http_port, "/livez") == (200, {"status": "alive"})
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


async def test_readyz_is_503_while_draining() -> None:
    running = await start_service(build())
    async with grpc.aio.insecure_channel(running.address) as channel:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        in_flight = asyncio.ensure_future(stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["2"])))
        for _ in range(200):  # until the call is in the server (the health counts it as a session)
            if (await get_json(running.http_port, "/health"))[1]["active_sessions"] == 1:
                break
            await asyncio.sleep(0.02)
        stopping = asyncio.create_task(running.stop(grace=30))
        status, body = await get_json(running.http_port, "/readyz")
        assert (status, body) == (503, {"status": "not_ready", "reasons": ["draining"]})
        status, health = await get_json(running.http_port, "/health")
        assert (status, health["status"], health["phase"]) == (503, "unhealthy", "draining")
        assert (await in_flight).model == "probe"
        await stopping


async def test_health_rules_follow_the_service_report() -> None:
    report = HealthReport(details={"model": "probe"})

    async def health_info() -> HealthReport:  # an async source is awaited
        return report

    running = await start_service(build(health_info=health_info))
    try:
        port = running.http_port
        report.circuit_breakers = {"llm": "open", "cache": "closed"}
        report.providers = {"openai": "available", "heuristic": "available"}
        status, health = await get_json(port, "/health")
        assert (status, health["status"], health["reasons"]) == (
            200,
            "degraded",
            ["circuit breaker llm open"],
        )
        assert health["circuit_breakers"] == {"llm": "open", "cache": "closed"}

        report.circuit_breakers = {"llm": "closed"}
        report.providers = {"openai": "unavailable", "heuristic": "available"}
        status, health = await get_json(port, "/health")
        assert (status, health["status"], health["reasons"]) == (200, "degraded", ["openai unavailable"])
        assert (await get_json(port, "/readyz"))[0] == 200  # degraded still serves

        report.not_ready = ["model not loaded"]
        report.database_status = "disconnected"
        status, health = await get_json(port, "/health")
        assert (status, health["status"], health["reasons"]) == (503, "unhealthy", ["model not loaded"])
        assert health["database_status"] == "disconnected"
        assert await get_json(port, "/readyz") == (
            503,
            {"status": "not_ready", "reasons": ["model not loaded"]},
        )

        report.not_ready, report.providers = [], {"openai": "available"}
        assert (await get_json(port, "/health"))[1]["status"] == "healthy"
    finally:
        await running.stop(grace=0)


async def test_unknown_service_health_check_is_not_found_without_an_error_log(
    running: RunningService, tmp_path: Path
) -> None:
    log_file = tmp_path / "probe.log"
    configure_logging("probe", "debug", "json", log_file=str(log_file))
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
            await stub.Check(health_pb2.HealthCheckRequest(service=""))  # and it keeps answering
    finally:
        reset_logging()
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    aborted = [r for r in records if r["event"] == "rpc_aborted"]
    assert [(r["level"], r["code"], r["method"]) for r in aborted] == [
        ("debug", "NOT_FOUND", "/grpc.health.v1.Health/Check")
    ]
    assert not [r for r in records if r["level"] in ("error", "critical") or "exception" in r]


async def test_metrics_off_and_profiling_on() -> None:
    running = await start_service(
        build(metrics_enabled=False, performance={"enable_profiling": True, "track_cpu": False})
    )
    try:
        assert (await asyncio.to_thread(http_get, running.http_port, "/metrics"))[0] == 404
        status, body = await asyncio.to_thread(http_get, running.http_port, "/debug/profile?seconds=0.05")
        assert status == 200 and b"function calls" in body
        status, health = await get_json(running.http_port, "/health")
        assert "cpu_seconds" not in health and health["memory_usage_mb"] > 0
    finally:
        await running.stop(grace=0)


async def test_profile_is_not_served_unless_enabled(running: RunningService) -> None:
    assert (await asyncio.to_thread(http_get, running.http_port, "/debug/profile?seconds=0.05"))[0] == 404


async def test_a_service_adds_routes_to_the_http_side_port() -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hello {request.match_info['name']}")

    async def shadow(_: web.Request) -> web.Response:
        return web.Response(text="not the real health")

    service = dataclasses.replace(
        build(), http_routes=[web.get("/hello/{name}", hello), web.get("/health", shadow)]
    )
    running = await start_service(service)
    try:
        assert await asyncio.to_thread(http_get, running.http_port, "/hello/probe") == (200, b"hello probe")
        # The side port's own routes come first: an extra route does not replace them.
        status, health = await get_json(running.http_port, "/health")
        assert status == 200 and health["service"] == "probe"
        assert (await asyncio.to_thread(http_get, running.http_port, "/nothing"))[0] == 404
    finally:
        await running.stop(grace=0)


@pytest.mark.parametrize("service", ["gateway", "facets", "embedding", "clustering"])
def test_help_prints_the_settings_and_serves_nothing(service: str, tmp_path: Path) -> None:
    """``--help`` exits 0 at once (no server started: the process ends by itself), naming the
    settings with their environment variables; an unreadable ``--config`` file exits 2."""
    run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    shown = run([sys.executable, "-m", f"briefxai_{service}", "--help"])
    assert shown.returncode == 0, shown.stderr
    assert f"usage: python -m briefxai_{service}" in shown.stdout
    assert f"BRIEFXAI_{service.upper()}_GRPC_PORT" in shown.stdout
    missing = run([sys.executable, "-m", f"briefxai_{service}", "--config", str(tmp_path / "missing.yaml")])
    assert missing.returncode == 2
    assert "missing.yaml" in missing.stderr
