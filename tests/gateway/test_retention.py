"""The retention purge on a real gateway: analyses (of every tenant) older than the configured age are
deleted with all their rows, young and still running ones are kept, each run is audited and calls its
hook, and a purge of age 0 deletes nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from briefxai.gateway.v1 import gateway_pb2
from briefxai_gateway import schema
from briefxai_gateway.models import AnalysisOptions, AnalysisState, Conversation, Message
from briefxai_gateway.security.audit import AuditEvent
from briefxai_gateway.security.principal import tenant_scope
from briefxai_gateway.security.retention import PURGE_ACTION, RetentionJob
from briefxai_gateway.security_settings import RetentionSettings
from briefxai_gateway.store import Store

from .conftest import GatewayFactory, GatewayHandle, conversations

pytestmark = pytest.mark.asyncio(loop_scope="session")

AUTH_OFF: dict[str, Any] = {"auth": {"mode": "off"}}
OPTIONS = gateway_pb2.AnalysisOptions(k=3, seed=7)


async def finished(gw: GatewayHandle) -> str:
    request = gateway_pb2.CreateAnalysisRequest(conversations=conversations(16), options=OPTIONS)
    created = (await gw.stub.CreateAnalysis(request)).analysis
    final = (await gw.wait(created.id))[-1].analysis
    assert final.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, final.error.message
    return created.id


def age(store: Store, analysis_id: str, days: float) -> None:
    """Moves the analysis's creation ``days`` into the past (any tenant)."""
    a = schema.analyses.c
    created = datetime.now(UTC) - timedelta(days=days)
    with store.engine.begin() as conn:
        conn.execute(update(schema.analyses).where(a.id == analysis_id).values(create_time=created))


class Recorder:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.runs: list[datetime] = []
        self.ran = asyncio.Event()

    async def audit(self, event: AuditEvent) -> None:
        self.events.append(event)

    async def on_run(self, now: datetime) -> None:
        self.runs.append(now)
        self.ran.set()


async def test_old_analyses_of_every_tenant_are_purged_young_and_running_ones_kept(
    start_gateway: GatewayFactory, closed_address: str, tmp_path: Path
) -> None:
    first = await start_gateway(**AUTH_OFF)
    old = await finished(first)
    young = await finished(first)
    await first.stop()
    # The same store, now with the clustering service down: a new analysis waits, RUNNING.
    gw = await start_gateway(
        **AUTH_OFF,
        clustering_address=closed_address,
        outage_budget_seconds=600,
        retry_policies={"clustering": {"max_attempts": 2, "initial_delay_ms": 10, "max_delay_ms": 50}},
        circuit_breakers={"clustering": {"failure_threshold": 2, "open_timeout_ms": 300}},
    )
    request = gateway_pb2.CreateAnalysisRequest(conversations=conversations(16), options=OPTIONS)
    running = (await gw.stub.CreateAnalysis(request)).analysis.id
    await gw.wait_until(running, lambda u: u.analysis.state == gateway_pb2.ANALYSIS_STATE_RUNNING)
    with tenant_scope("other-tenant"):
        gw.store.create_analysis(
            "other-tenant-old",
            request_id="",
            options=AnalysisOptions(),
            batch_size=8,
            conversations=[Conversation("c", "u", [Message("user", "hello")])],
        )
        gw.store.finish("other-tenant-old", AnalysisState.FAILED, "for the test")
    for analysis_id in (old, running, "other-tenant-old"):
        age(gw.store, analysis_id, 40)
    age(gw.store, young, 20)

    recorder = Recorder()
    job = RetentionJob(
        gw.gateway.manager,
        RetentionSettings(analysis_max_age_days=30, purge_interval_seconds=3600),
        on_run=recorder.on_run,
        audit=recorder.audit,
    )
    report = await job.run_once()
    assert sorted(report.purged) == sorted([f"default/{old}", "other-tenant/other-tenant-old"])
    assert report.kept_running == [f"default/{running}"]
    assert report.failed == []
    assert not any(gw.store.row_counts(old).values())
    assert not any(gw.store.row_counts("other-tenant-old").values())
    assert gw.store.row_counts(young)["conversations"] == 16
    assert gw.store.row_counts(running)["conversations"] == 16

    [event] = recorder.events
    assert (event.actor, event.action, event.outcome) == ("system", PURGE_ACTION, "ok")
    assert event.details["count"] == 2
    assert sorted(event.details["analysis_ids"]) == sorted(report.purged)
    assert len(recorder.runs) == 1

    # The next run finds nothing more to purge; the running analysis is still kept.
    again = await job.run_once()
    assert again.purged == [] and again.kept_running == [f"default/{running}"]
    assert recorder.events[-1].details["count"] == 0


async def test_the_job_runs_until_stopped_and_age_zero_purges_nothing(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway(**AUTH_OFF)
    old = await finished(gw)
    age(gw.store, old, 4000)
    recorder = Recorder()
    job = RetentionJob(
        gw.gateway.manager,
        RetentionSettings(analysis_max_age_days=0, purge_interval_seconds=3600),
        on_run=recorder.on_run,
        audit=recorder.audit,
    )
    job.start()
    await asyncio.wait_for(recorder.ran.wait(), 30)
    await job.stop()
    assert len(recorder.runs) == 1
    assert recorder.events == []  # the purge is off: no purge run to record
    assert gw.store.row_counts(old)["conversations"] == 16
