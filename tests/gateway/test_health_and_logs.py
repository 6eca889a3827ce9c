"""The gateway's /health and /readyz over real downstream services and a real SQLite store: the
downstreams' grpc.health.v1 status (followed with Watch) folded into its own, the store's SELECT 1,
and the analysis id on the log lines of an analysis."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from briefxai.gateway.v1 import gateway_pb2
from briefxai_common.bootstrap import start_service
from briefxai_common.logging import configure_logging, reset_logging
from briefxai_facets.server import build_service as build_facets
from briefxai_facets.settings import FacetsSettings
from tests.support.http import get_json
from tests.support.ports import free_port

from .conftest import LOCAL, GatewayFactory, conversations

pytestmark = pytest.mark.asyncio(loop_scope="session")

DOWNSTREAMS = ("facets", "embedding", "clustering")


async def wait_for_health(
    port: int, predicate: Callable[[dict[str, Any]], bool], limit: float = 60.0
) -> tuple[int, dict[str, Any]]:
    """The first /health answer that satisfies ``predicate`` (polled, for at most ``limit`` seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        status, body = await get_json(port, "/health")
        if predicate(body):
            return status, body
        if loop.time() > deadline:
            raise AssertionError(f"/health never matched; last answer: {body}")
        await asyncio.sleep(0.1)


def healthy(body: dict[str, Any]) -> bool:
    return bool(body["status"] == "healthy")


async def test_health_has_the_reference_shape(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway()
    status, body = await wait_for_health(gw.running.http_port, healthy)
    assert status == 200
    assert body["service"] == "gateway" and body["grpc_status"] == "SERVING"
    assert body["database_status"] == "connected"
    assert body["providers"] == dict.fromkeys(DOWNSTREAMS, "available")
    assert body["circuit_breakers"] == dict.fromkeys(DOWNSTREAMS, "closed")
    assert body["active_sessions"] == 0
    assert body["uptime_seconds"] >= 0 and body["memory_usage_mb"] > 0
    assert {name: d["health"] for name, d in body["downstream"].items()} == dict.fromkeys(
        DOWNSTREAMS, "SERVING"
    )
    assert await get_json(gw.running.http_port, "/readyz") == (200, {"status": "ready"})
    assert await get_json(gw.running.http_port, "/livez") == (200, {"status": "alive"})


async def test_degraded_while_a_downstream_is_down_then_healthy_again(start_gateway: GatewayFactory) -> None:
    facets_port = free_port()

    async def start_facets() -> Any:
        return await start_service(build_facets(FacetsSettings.load(**{**LOCAL, "grpc_port": facets_port})))

    facets = await start_facets()
    try:
        gw = await start_gateway(facets_address=facets.address)
        port = gw.running.http_port
        await wait_for_health(port, healthy)

        await facets.stop(grace=0)
        status, body = await wait_for_health(port, lambda b: b["providers"]["facets"] != "available")
        assert status == 200 and body["status"] == "degraded"
        assert body["providers"] == {
            "facets": "unavailable",
            "embedding": "available",
            "clustering": "available",
        }
        assert "facets unavailable" in body["reasons"]
        assert body["downstream"]["facets"]["health"] in ("NOT_SERVING", "UNREACHABLE")
        # Degraded still serves: other analyses may not need the lost service for a while.
        assert (await get_json(port, "/readyz"))[0] == 200

        facets = await start_facets()
        status, body = await wait_for_health(port, healthy)
        assert status == 200 and body["providers"]["facets"] == "available"
    finally:
        await facets.stop(grace=0)


async def test_unreachable_store_is_unhealthy_and_not_ready(
    start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    store_dir = tmp_path / "store"
    gw = await start_gateway(store_url=f"sqlite:///{store_dir}/gateway.db")
    port = gw.running.http_port
    await wait_for_health(port, healthy)

    # The database goes away (its volume is lost): open connections are dropped, new ones fail.
    gw.store.engine.dispose()
    shutil.rmtree(store_dir)
    status, body = await get_json(port, "/health")
    assert status == 503 and body["status"] == "unhealthy"
    assert body["database_status"] == "disconnected"
    assert body["reasons"][0].startswith("store unreachable: OperationalError")
    status, ready = await get_json(port, "/readyz")
    assert status == 503 and ready["reasons"] == body["reasons"]

    store_dir.mkdir()
    status, body = await wait_for_health(port, healthy)
    assert body["database_status"] == "connected"


async def test_log_lines_of_an_analysis_carry_its_id(start_gateway: GatewayFactory, tmp_path: Path) -> None:
    log_file = tmp_path / "suite.log"
    configure_logging("gateway", "debug", "json", log_file=str(log_file))
    try:
        gw = await start_gateway()
        request = gateway_pb2.CreateAnalysisRequest(conversations=conversations(6))
        created = (await gw.stub.CreateAnalysis(request)).analysis
        final = (await gw.wait(created.id))[-1]
        assert final.analysis.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED
    finally:
        reset_logging()
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert all({"service", "level", "timestamp", "event"} <= set(r) for r in records)
    mine = [r for r in records if r.get("analysis_id") == created.id]
    assert {"analysis_running", "analysis_succeeded"} <= {r["event"] for r in mine}
    # Bound where the analysis runs (the scheduler), the id reaches the lines of the calls it makes.
    assert [r for r in mine if r["event"] == "rpc_done" and r["method"].endswith("/ExtractFacets")]
