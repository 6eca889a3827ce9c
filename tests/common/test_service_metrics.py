"""The per-service metrics (``briefxai_operations_total`` and friends) on a real bootstrapped server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY
from pydantic_settings import SettingsConfigDict

from briefxai.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from briefxai_common import service_metrics
from briefxai_common.bootstrap import RunningService, Service, start_service
from briefxai_common.config import ServiceSettings
from briefxai_common.errors import InvalidArgument, NotFound
from briefxai_common.resilience import CircuitBreaker
from tests.support.http import http_get

EMBEDDING_SERVICE = embedding_pb2.DESCRIPTOR.services_by_name["EmbeddingService"].full_name
NAME = "metrics-probe"


class ProbeSettings(ServiceSettings):
    section: ClassVar[str] = "probe"
    model_config = SettingsConfigDict(env_prefix="BRIEFXAI_PROBE_", env_nested_delimiter="__", extra="forbid")


class GatedServicer(embedding_pb2_grpc.EmbeddingServiceServicer):
    """EmbedTexts: "bad" is an invalid argument, "crash" a bug, "wait" parks until ``release`` is set."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def EmbedTexts(self, request: Any, context: Any) -> embedding_pb2.EmbedTextsResponse:
        if "bad" in request.texts:
            raise InvalidArgument("texts[0]", "must not be 'bad'")
        if "crash" in request.texts:
            raise RuntimeError("a bug")
        if "wait" in request.texts:
            self.entered.set()
            await self.release.wait()
        return embedding_pb2.EmbedTextsResponse(model="probe")

    async def GetModelInfo(self, request: Any, context: Any) -> embedding_pb2.GetModelInfoResponse:
        raise NotFound("no model here")


async def eventually(condition: Callable[[], bool], limit: float = 10.0) -> bool:
    """Whether ``condition()`` becomes true within ``limit`` seconds (checked every 20 ms)."""
    for _ in range(int(limit / 0.02)):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


def value(name: str, **labels: str) -> float:
    found = REGISTRY.get_sample_value(name, labels)
    return 0.0 if found is None else found


def ops(operation: str, status: str) -> float:
    return value("briefxai_operations_total", service=NAME, operation=operation, status=status)


def errors(kind: str) -> float:
    return value("briefxai_errors_total", service=NAME, kind=kind)


@pytest.fixture
async def probe() -> AsyncIterator[tuple[RunningService, GatedServicer, Any]]:
    servicer = GatedServicer()  # type: ignore[abstract]  # StreamEmbedTexts stays unimplemented

    def register(server: grpc.aio.Server) -> list[str]:
        embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(servicer, server)
        return [EMBEDDING_SERVICE]

    settings = ProbeSettings.load(host="127.0.0.1", grpc_port=0, http_port=0, grace_period_seconds=0)
    running = await start_service(Service(NAME, settings, register))
    channel = grpc.aio.insecure_channel(running.address)
    yield running, servicer, embedding_pb2_grpc.EmbeddingServiceStub(channel)
    servicer.release.set()
    await channel.close(None)
    await running.stop(grace=0)


async def test_series_exist_at_zero_before_the_first_call(
    probe: tuple[RunningService, GatedServicer, Any],
) -> None:
    running, _, _ = probe
    status, body = await asyncio.to_thread(http_get, running.http_port, "/metrics")
    text = body.decode()
    assert status == 200
    # Every method of the registered service (implemented or not) with every status the errors map to.
    for method in ("EmbedTexts", "StreamEmbedTexts", "GetModelInfo"):
        for code in ("OK", "INVALID_ARGUMENT", "UNAVAILABLE", "INTERNAL"):
            line = f'briefxai_operations_total{{operation="{method}",service="{NAME}",status="{code}"}} 0.0'
            assert line in text, line
        assert (
            f'briefxai_operation_duration_seconds_count{{operation="{method}",service="{NAME}"}} 0.0' in text
        )
    for kind in service_metrics.RPC_ERROR_KINDS:
        assert f'briefxai_errors_total{{kind="{kind}",service="{NAME}"}} 0.0' in text
    assert f'briefxai_active_sessions{{service="{NAME}"}} 0.0' in text
    assert value("briefxai_memory_usage_bytes", service=NAME) > 0
    assert f'briefxai_event_loop_lag_seconds_count{{service="{NAME}"}}' in text


async def test_rpcs_are_counted_with_their_status_and_errors_by_kind(
    probe: tuple[RunningService, GatedServicer, Any],
) -> None:
    _, _, stub = probe
    before = {
        "ok": ops("EmbedTexts", "OK"),
        "invalid": ops("EmbedTexts", "INVALID_ARGUMENT"),
        "unknown": ops("EmbedTexts", "UNKNOWN"),
        "not_found": ops("GetModelInfo", "NOT_FOUND"),
        "seconds": value("briefxai_operation_duration_seconds_count", service=NAME, operation="EmbedTexts"),
        "invalid_argument": errors("invalid_argument"),
        "internal": errors("internal"),
        "kind_not_found": errors("not_found"),
    }
    await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["fine"]))
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["bad"]))
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as crash:
        await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["crash"]))
    assert crash.value.code() == grpc.StatusCode.UNKNOWN
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetModelInfo(embedding_pb2.GetModelInfoRequest())

    assert ops("EmbedTexts", "OK") == before["ok"] + 1
    assert ops("EmbedTexts", "INVALID_ARGUMENT") == before["invalid"] + 1
    assert ops("EmbedTexts", "UNKNOWN") == before["unknown"] + 1
    assert ops("GetModelInfo", "NOT_FOUND") == before["not_found"] + 1
    seconds = value("briefxai_operation_duration_seconds_count", service=NAME, operation="EmbedTexts")
    assert seconds == before["seconds"] + 3
    assert errors("invalid_argument") == before["invalid_argument"] + 1
    assert errors("internal") == before["internal"] + 1  # UNKNOWN counts as internal
    assert errors("not_found") == before["kind_not_found"] + 1


async def test_health_checks_are_operations_but_not_errors_nor_sessions(
    probe: tuple[RunningService, GatedServicer, Any],
) -> None:
    running, _, _ = probe
    not_found = ops("Check", "NOT_FOUND")
    kind = errors("not_found")
    async with grpc.aio.insecure_channel(running.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        await health.Check(health_pb2.HealthCheckRequest(service=""))
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert ops("Check", "NOT_FOUND") == not_found + 1
    assert errors("not_found") == kind


async def test_active_sessions_count_rpcs_in_flight(probe: tuple[RunningService, GatedServicer, Any]) -> None:
    _, servicer, stub = probe
    assert value("briefxai_active_sessions", service=NAME) == 0
    call = asyncio.ensure_future(stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["wait"])))
    await asyncio.wait_for(servicer.entered.wait(), 10)
    assert value("briefxai_active_sessions", service=NAME) == 1
    servicer.release.set()
    await call
    assert value("briefxai_active_sessions", service=NAME) == 0


async def test_a_service_may_give_its_own_active_sessions(
    probe: tuple[RunningService, GatedServicer, Any],
) -> None:
    service_metrics.set_active_sessions(NAME, lambda: 7)
    try:
        assert value("briefxai_active_sessions", service=NAME) == 7
    finally:
        service_metrics._session_sources.pop(NAME)


async def test_event_loop_lag_is_measured_while_serving_and_stops_with_the_server(
    probe: tuple[RunningService, GatedServicer, Any],
) -> None:
    running, _, _ = probe
    first = value("briefxai_event_loop_lag_seconds_count", service=NAME)
    assert await eventually(lambda: value("briefxai_event_loop_lag_seconds_count", service=NAME) > first)
    assert any(t.get_name() == f"{NAME}-loop-lag" for t in asyncio.all_tasks())
    await running.stop(grace=0)
    assert await eventually(lambda: not any(t.get_name().startswith(NAME) for t in asyncio.all_tasks()))


def test_error_kinds() -> None:
    assert service_metrics.error_kind("OK") is None
    assert service_metrics.error_kind("CANCELLED") is None
    assert service_metrics.error_kind("UNKNOWN") == "internal"
    assert service_metrics.error_kind("DATA_LOSS") == "internal"
    assert service_metrics.error_kind("UNAVAILABLE") == "unavailable"
    assert service_metrics.error_kind("INVALID_ARGUMENT") == "invalid_argument"


class Duplicate(Exception):
    pass


def test_timed_operation_statuses() -> None:
    service = "timed-probe"
    with service_metrics.timed_operation(service, "op"):
        pass
    with (
        pytest.raises(Duplicate),
        service_metrics.timed_operation(service, "op", expected={Duplicate: "ALREADY_EXISTS"}),
    ):
        raise Duplicate
    with pytest.raises(ValueError), service_metrics.timed_operation(service, "op", failure_kind="store"):
        raise ValueError("broken")
    assert value("briefxai_operations_total", service=service, operation="op", status="OK") == 1
    assert value("briefxai_operations_total", service=service, operation="op", status="ALREADY_EXISTS") == 1
    assert value("briefxai_operations_total", service=service, operation="op", status="INTERNAL") == 1
    assert value("briefxai_operation_duration_seconds_count", service=service, operation="op") == 3
    assert value("briefxai_errors_total", service=service, kind="store") == 1


def test_breaker_state_is_read_at_scrape_time() -> None:
    now = [0.0]
    breaker = CircuitBreaker("remote", failure_threshold=1, open_timeout=10, clock=lambda: now[0])
    service_metrics.watch_breaker("breaker-probe", breaker)
    labels = {"service": "breaker-probe", "breaker": "remote"}
    assert REGISTRY.get_sample_value("briefxai_circuit_breaker_state", labels) == 0
    breaker.record_failure(RuntimeError("down"))
    assert REGISTRY.get_sample_value("briefxai_circuit_breaker_state", labels) == 1
    now[0] = 11
    assert REGISTRY.get_sample_value("briefxai_circuit_breaker_state", labels) == 2
