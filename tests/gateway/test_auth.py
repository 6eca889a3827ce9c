"""Authentication, roles, tenants and the audit of calls on a real gateway (127.0.0.1, real workers).

Each rule of the security issue: no credential, a bad one, a role without the right, another tenant's
analysis, an expired or revoked key, a lockout, auth off; the HTTP report behind the same checks; the
audit records the calls leave.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any, cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from briefxai.gateway.v1 import gateway_pb2, gateway_pb2_grpc, security_pb2, security_pb2_grpc
from briefxai_common.apikeys import generate_api_key
from tests.gateway.conftest import GatewayFactory, GatewayHandle, authorized_channel, conversations
from tests.support.http import http_get

pytestmark = pytest.mark.asyncio(loop_scope="session")
ROLE = {
    "viewer": security_pb2.ROLE_VIEWER,
    "analyst": security_pb2.ROLE_ANALYST,
    "admin": security_pb2.ROLE_ADMIN,
}


def security(channel: grpc.aio.Channel) -> Any:
    return cast(Any, security_pb2_grpc.SecurityServiceStub(channel))


def analyses(channel: grpc.aio.Channel) -> Any:
    return cast(Any, gateway_pb2_grpc.AnalysisServiceStub(channel))


async def new_key(gw: GatewayHandle, role: str, tenant: str = "", ttl: int = 0) -> str:
    response = await security(gw.channel).CreateApiKey(
        security_pb2.CreateApiKeyRequest(tenant_id=tenant, role=ROLE[role], ttl_seconds=ttl)
    )
    return str(response.key)


async def code_of(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code()


async def created(gw: GatewayHandle, count: int = 12) -> str:
    response = await gw.stub.CreateAnalysis(
        gateway_pb2.CreateAnalysisRequest(conversations=conversations(count))
    )
    return str(response.analysis.id)


def audit_rows(gw: GatewayHandle) -> list[dict[str, Any]]:
    path = gw.settings.store_url.removeprefix("sqlite:///")
    connection = sqlite3.connect(path)
    connection.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in connection.execute("SELECT * FROM audit_log ORDER BY sequence")]
    finally:
        connection.close()


def security_events(kind: str) -> float:
    return (
        REGISTRY.get_sample_value("briefxai_security_events_total", {"service": "gateway", "kind": kind})
        or 0.0
    )


async def test_missing_and_bad_credentials_are_unauthenticated(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway()
    address = gw.running.address
    async with authorized_channel(address, None) as bare:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await analyses(bare).ListAnalyses(gateway_pb2.ListAnalysesRequest())
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert "authorization: Bearer" in (caught.value.details() or "")
        # Health and reflection stay open: probes and tools need them.
        health = await health_pb2_grpc.HealthStub(bare).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    for token in ("not-a-key", generate_api_key(), "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"):
        async with authorized_channel(address, token) as channel:
            code = await code_of(analyses(channel).ListAnalyses(gateway_pb2.ListAnalysesRequest()))
            assert code is grpc.StatusCode.UNAUTHENTICATED, token
    failures = [row for row in audit_rows(gw) if row["action"] == "auth.failure"]
    assert len(failures) >= 4
    assert {json.loads(row["details"])["reason"] for row in failures} >= {"missing", "malformed", "unknown"}
    assert all(row["outcome"] == "denied" and row["status_code"] == "UNAUTHENTICATED" for row in failures)


async def test_roles_allow_what_they_name(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway()
    analysis_id = await created(gw)
    viewer, analyst = await new_key(gw, "viewer"), await new_key(gw, "analyst")
    async with authorized_channel(gw.running.address, viewer) as channel:
        got = await analyses(channel).GetAnalysis(gateway_pb2.GetAnalysisRequest(id=analysis_id))
        assert got.analysis.id == analysis_id
        create = analyses(channel).CreateAnalysis(
            gateway_pb2.CreateAnalysisRequest(conversations=conversations(4))
        )
        assert await code_of(create) is grpc.StatusCode.PERMISSION_DENIED
        delete = analyses(channel).DeleteAnalysis(gateway_pb2.DeleteAnalysisRequest(id=analysis_id))
        assert await code_of(delete) is grpc.StatusCode.PERMISSION_DENIED
    async with authorized_channel(gw.running.address, analyst) as channel:
        response = await analyses(channel).CreateAnalysis(
            gateway_pb2.CreateAnalysisRequest(conversations=conversations(4))
        )
        assert response.analysis.id
        listing = security(channel).ListApiKeys(security_pb2.ListApiKeysRequest())
        assert await code_of(listing) is grpc.StatusCode.PERMISSION_DENIED
    denied = [row for row in audit_rows(gw) if row["status_code"] == "PERMISSION_DENIED"]
    assert {row["action"] for row in denied} >= {"create", "delete", "key.list"}
    assert all(row["actor"].startswith("key:") for row in denied)


async def test_another_tenants_analysis_is_not_found(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway()
    analysis_id = await created(gw)
    other = await new_key(gw, "admin", tenant="acme")
    async with authorized_channel(gw.running.address, other) as channel:
        stub = analyses(channel)
        for call in (
            stub.GetAnalysis(gateway_pb2.GetAnalysisRequest(id=analysis_id)),
            stub.DeleteAnalysis(gateway_pb2.DeleteAnalysisRequest(id=analysis_id)),
            stub.CancelAnalysis(gateway_pb2.CancelAnalysisRequest(id=analysis_id)),
            stub.GetAnalysisResults(gateway_pb2.GetAnalysisResultsRequest(id=analysis_id)),
        ):
            assert await code_of(call) is grpc.StatusCode.NOT_FOUND
        assert list((await stub.ListAnalyses(gateway_pb2.ListAnalysesRequest())).analyses) == []
        # Its own analysis runs to the end under its own tenant.
        own = await stub.CreateAnalysis(gateway_pb2.CreateAnalysisRequest(conversations=conversations(12)))
        updates = [u async for u in stub.WatchAnalysis(gateway_pb2.WatchAnalysisRequest(id=own.analysis.id))]
        assert updates[-1].analysis.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED
        # An admin of acme manages acme's keys only.
        foreign = security(channel).CreateApiKey(
            security_pb2.CreateApiKeyRequest(tenant_id="default", role=security_pb2.ROLE_ADMIN)
        )
        assert await code_of(foreign) is grpc.StatusCode.PERMISSION_DENIED
        keys = await security(channel).ListApiKeys(security_pb2.ListApiKeysRequest())
        assert {key.tenant_id for key in keys.api_keys} == {"acme"}
    mine = await gw.stub.ListAnalyses(gateway_pb2.ListAnalysesRequest())
    assert own.analysis.id not in {a.id for a in mine.analyses}
    path = gw.settings.store_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        tenants = {
            row[0]
            for row in connection.execute(
                "SELECT DISTINCT tenant_id FROM conversations WHERE analysis_id = ?", (own.analysis.id,)
            )
        }
    assert tenants == {"acme"}


async def test_expired_and_revoked_keys_are_refused(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway()
    short = await new_key(gw, "viewer", ttl=1)
    revoked = await new_key(gw, "viewer")
    async with authorized_channel(gw.running.address, revoked) as channel:
        await analyses(channel).ListAnalyses(gateway_pb2.ListAnalysesRequest())
        key_id = revoked.split("_")[1]
        await security(gw.channel).RevokeApiKey(security_pb2.RevokeApiKeyRequest(id=key_id))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await analyses(channel).ListAnalyses(gateway_pb2.ListAnalysesRequest())
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert "revoked" in (caught.value.details() or "")
    await asyncio.sleep(1.2)
    async with authorized_channel(gw.running.address, short) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await analyses(channel).ListAnalyses(gateway_pb2.ListAnalysesRequest())
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert "expired" in (caught.value.details() or "")
    listed = await security(gw.channel).ListApiKeys(security_pb2.ListApiKeysRequest(include_inactive=True))
    by_id = {key.id: key for key in listed.api_keys}
    assert by_id[key_id].HasField("revoke_time")
    active = await security(gw.channel).ListApiKeys(security_pb2.ListApiKeysRequest())
    assert key_id not in {key.id for key in active.api_keys}
    actions = [row["action"] for row in audit_rows(gw)]
    assert actions.count("key.create") >= 3 and "key.revoke" in actions


async def test_repeated_failures_lock_the_peer_out(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway(
        auth={"lockout": {"max_failures": 3, "window_seconds": 60, "lockout_seconds": 60}}
    )
    before = security_events("lockout")
    async with authorized_channel(gw.running.address, generate_api_key()) as channel:
        for _ in range(3):
            code = await code_of(analyses(channel).ListAnalyses(gateway_pb2.ListAnalysesRequest()))
            assert code is grpc.StatusCode.UNAUTHENTICATED
    # Now even the admin key is refused from this address until the lockout ends.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gw.stub.ListAnalyses(gateway_pb2.ListAnalysesRequest())
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "locked out" in (caught.value.details() or "")
    assert security_events("lockout") > before
    assert any(row["action"] == "security.lockout" for row in audit_rows(gw))


async def test_auth_off_admits_everyone_as_operator_admin(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway(auth={"mode": "off"})
    async with authorized_channel(gw.running.address, None) as bare:
        response = await analyses(bare).CreateAnalysis(
            gateway_pb2.CreateAnalysisRequest(conversations=conversations(4))
        )
    rows = [row for row in audit_rows(gw) if row["action"] == "create"]
    assert rows[-1]["actor"] == "anonymous" and rows[-1]["resource"] == f"analyses/{response.analysis.id}"


async def test_http_report_needs_a_key(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway()
    analysis_id = await created(gw)
    await gw.wait(analysis_id)
    path = f"/analyses/{analysis_id}/report"
    port = gw.running.http_port
    status, _ = await asyncio.to_thread(http_get, port, path)
    assert status == 401
    bearer = {"Authorization": f"Bearer {gw.admin_key}"}
    status, body = await asyncio.to_thread(http_get, port, path, bearer)
    assert status == 200 and b"<html" in body.lower()
    other = await new_key(gw, "viewer", tenant="acme")
    status, _ = await asyncio.to_thread(http_get, port, path, {"Authorization": f"Bearer {other}"})
    assert status == 404
    reads = [row for row in audit_rows(gw) if row["rpc"].startswith("http GET")]
    assert [row["status_code"] for row in reads][-2:] == ["OK", "NOT_FOUND"]


async def test_audit_records_calls_and_detects_tampering(
    start_gateway: GatewayFactory, span_exporter: InMemorySpanExporter
) -> None:
    gw = await start_gateway()
    analysis_id = await created(gw)
    await gw.wait(analysis_id)
    await gw.stub.GetAnalysisResults(gateway_pb2.GetAnalysisResultsRequest(id=analysis_id))
    await gw.stub.CancelAnalysis(gateway_pb2.CancelAnalysisRequest(id=analysis_id))
    rows = audit_rows(gw)
    by_action = {row["action"]: row for row in rows}
    assert {"key.create", "create", "read_results", "cancel"} <= set(by_action)
    create = by_action["create"]
    assert create["actor"].startswith("key:") and create["tenant_id"] == "default"
    assert create["resource"] == f"analyses/{analysis_id}" and create["peer"].startswith("ipv")
    assert create["outcome"] == "ok"
    assert any(
        f"{span.context.trace_id:032x}" == create["trace_id"] for span in span_exporter.get_finished_spans()
    )
    verdict = await security(gw.channel).VerifyAuditLog(security_pb2.VerifyAuditLogRequest())
    assert verdict.intact and verdict.records_checked >= len(rows)
    exported = [
        record
        async for response in security(gw.channel).ExportAuditLog(security_pb2.ExportAuditLogRequest())
        for record in response.records
    ]
    assert [r.sequence for r in exported][: len(rows)] == [row["sequence"] for row in rows]

    target = by_action["create"]["sequence"]
    path = gw.settings.store_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE audit_log SET actor = 'key:someoneelse' WHERE sequence = ?", (target,))
    verdict = await security(gw.channel).VerifyAuditLog(security_pb2.VerifyAuditLogRequest())
    assert not verdict.intact
    assert verdict.first_bad_sequence == target
