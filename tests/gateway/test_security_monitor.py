"""The security monitor: lockouts after authentication failures, and the rules that raise security events
(a fake clock, the audit records collected in a list, the metric read from the process registry)."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from briefxai_gateway.security.audit import AuditEvent
from briefxai_gateway.security.monitor import SecurityMonitor, peer_host
from briefxai_gateway.security.principal import Principal, Role
from briefxai_gateway.security_settings import AuthSettings

ALICE = Principal(actor="key:alice", tenant_id="acme", role=Role.ANALYST, key_id="alice")
BOB = Principal(actor="jwt:bob", tenant_id="globex", role=Role.VIEWER)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Harness:
    def __init__(self, **settings: Any) -> None:
        self.clock = FakeClock()
        self.events: list[AuditEvent] = []
        self.monitor = SecurityMonitor(AuthSettings.model_validate(settings), self.record, self.clock)

    async def record(self, event: AuditEvent) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [event.action for event in self.events]

    async def fail(self, times: int = 1, *, key_id: str = "", peer: str = "ipv4:10.0.0.1:5000") -> None:
        for _ in range(times):
            await self.monitor.authentication_failed(
                key_id=key_id, peer=peer, reason="unknown", rpc="/x/Create", trace_id="t1"
            )

    async def finish(
        self, times: int, *, status: str, action: str = "read", principal: Principal = ALICE
    ) -> None:
        for _ in range(times):
            await self.monitor.call_finished(
                principal=principal, peer="ipv4:10.0.0.9:1", rpc="/x/Get", action=action, status_code=status
            )


def lockout(max_failures: int = 3, window: float = 60.0, lock: float = 300.0) -> Harness:
    return Harness(lockout={"max_failures": max_failures, "window_seconds": window, "lockout_seconds": lock})


def rules(**thresholds: Any) -> Harness:
    return Harness(rules={"window_seconds": 60.0, **thresholds})


def events_total(kind: str) -> float:
    labels = {"service": "gateway", "kind": kind}
    return REGISTRY.get_sample_value("briefxai_security_events_total", labels) or 0.0


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:127.0.0.1:5555", "127.0.0.1"),
        ("ipv6:[::1]:5555", "::1"),
        ("ipv6:%5B::1%5D:5555", "::1"),
        ("ipv6:[2001:db8::7]:443", "2001:db8::7"),
        ("unix:/tmp/gateway.sock", "unix:/tmp/gateway.sock"),
        ("", ""),
    ],
)
def test_the_peer_host_drops_the_port(peer: str, host: str) -> None:
    assert peer_host(peer) == host


async def test_a_peer_is_locked_out_at_the_threshold_and_once() -> None:
    h = lockout(max_failures=3)
    await h.fail(2)
    assert h.monitor.lockout_remaining("", "ipv4:10.0.0.1:5000") == 0
    assert h.events == []

    await h.fail()
    # Another source port of the same host is the same peer.
    assert h.monitor.lockout_remaining("", "ipv4:10.0.0.1:6000") == 300
    assert h.monitor.lockout_remaining("", "ipv4:10.0.0.2:5000") == 0
    await h.fail(5)  # refused anyway while locked: no second event
    assert h.kinds() == ["security.lockout"]
    event = h.events[0]
    assert (event.actor, event.outcome, event.resource, event.rpc, event.trace_id) == (
        "anonymous",
        "denied",
        "peer:10.0.0.1",
        "/x/Create",
        "t1",
    )
    assert event.details["failures"] == 3
    assert event.details["locked"] == "peer"


async def test_the_lockout_expires() -> None:
    h = lockout(max_failures=2, lock=100.0)
    await h.fail(2)
    h.clock.advance(40)
    assert h.monitor.lockout_remaining("", "ipv4:10.0.0.1:1") == pytest.approx(60)
    h.clock.advance(60)
    assert h.monitor.lockout_remaining("", "ipv4:10.0.0.1:1") == 0
    # Counting starts afresh: one failure after the lockout does not lock again.
    await h.fail()
    assert h.monitor.lockout_remaining("", "ipv4:10.0.0.1:1") == 0
    await h.fail()
    assert h.monitor.lockout_remaining("", "ipv4:10.0.0.1:1") == 100
    assert h.kinds() == ["security.lockout", "security.lockout"]


async def test_failures_slide_out_of_the_window() -> None:
    h = lockout(max_failures=3, window=60.0)
    await h.fail(2)
    h.clock.advance(61)
    await h.fail(2)  # the first two are out of the window
    assert h.monitor.lockout_remaining("", "ipv4:10.0.0.1:1") == 0
    h.clock.advance(30)
    await h.fail()  # three within the last 60 s
    assert h.monitor.lockout_remaining("", "ipv4:10.0.0.1:1") == 300
    assert h.kinds() == ["security.lockout"]


async def test_a_key_is_locked_out_from_every_peer() -> None:
    """Failures from many hosts with one key id lock the key, not the hosts."""
    h = lockout(max_failures=3)
    for host in range(3):
        await h.fail(key_id="k1", peer=f"ipv4:10.0.1.{host}:1")
    assert h.monitor.lockout_remaining("k1", "ipv4:192.168.0.1:1") == 300
    assert h.monitor.lockout_remaining("k2", "ipv4:10.0.1.0:1") == 0
    assert h.monitor.lockout_remaining("", "ipv4:10.0.1.0:1") == 0
    assert [(e.actor, e.resource) for e in h.events] == [("key:k1", "key:k1")]
    assert h.events[0].details["locked"] == "key"


async def test_a_peer_is_locked_out_whatever_key_it_tries() -> None:
    """One host guessing a different key id each time locks the host, and so every key from it."""
    h = lockout(max_failures=3)
    for key in range(3):
        await h.fail(key_id=f"guess{key}", peer="ipv6:[::1]:4000")
    assert h.monitor.lockout_remaining("good-key", "ipv6:[::1]:4001") == 300
    assert h.monitor.lockout_remaining("good-key", "ipv4:10.9.9.9:1") == 0
    assert [e.resource for e in h.events] == ["peer:::1"]


async def test_a_lockout_raises_the_metric_and_a_warning_without_secrets() -> None:
    h = lockout(max_failures=1)
    before = events_total("lockout")
    with capture_logs() as logs:
        await h.fail(key_id="k9")
    assert events_total("lockout") == before + 2  # the key and the peer
    warnings = [line for line in logs if line["event"] == "security_event"]
    assert [(w["log_level"], w["kind"], w["subject"]) for w in warnings] == [
        ("warning", "lockout", "key:k9"),
        ("warning", "lockout", "peer:10.0.0.1"),
    ]
    assert warnings[0]["failures"] == 1
    assert warnings[0]["peer"] == "ipv4:10.0.0.1:5000"


async def test_cross_tenant_probing_fires_once_per_window() -> None:
    h = rules(not_found_threshold=3)
    before = events_total("cross_tenant_probing")
    await h.finish(2, status="NOT_FOUND")
    await h.finish(1, status="OK")
    assert h.events == []
    await h.finish(1, status="NOT_FOUND")
    await h.finish(10, status="NOT_FOUND")  # still the same window: quiet
    assert h.kinds() == ["security.cross_tenant_probing"]
    event = h.events[0]
    assert (event.actor, event.tenant_id, event.outcome, event.peer) == (
        "key:alice",
        "acme",
        "flagged",
        "ipv4:10.0.0.9:1",
    )
    assert event.details == {"kind": "cross_tenant_probing", "count": 3, "threshold": 3, "window_seconds": 60}
    assert events_total("cross_tenant_probing") == before + 1

    h.clock.advance(61)
    await h.finish(2, status="NOT_FOUND")
    assert len(h.events) == 1
    await h.finish(1, status="NOT_FOUND")
    assert h.kinds() == ["security.cross_tenant_probing"] * 2


async def test_rules_count_per_actor() -> None:
    h = rules(not_found_threshold=3)
    await h.finish(2, status="NOT_FOUND", principal=ALICE)
    await h.finish(2, status="NOT_FOUND", principal=BOB)
    assert h.events == []
    await h.finish(1, status="NOT_FOUND", principal=BOB)
    assert [(e.action, e.actor, e.tenant_id) for e in h.events] == [
        ("security.cross_tenant_probing", "jwt:bob", "globex")
    ]


async def test_invalid_argument_burst_within_a_sliding_window() -> None:
    h = rules(invalid_argument_threshold=3)
    before = events_total("invalid_argument_burst")
    await h.finish(2, status="INVALID_ARGUMENT")
    h.clock.advance(61)
    await h.finish(2, status="INVALID_ARGUMENT")
    assert h.events == []  # never three within one window
    h.clock.advance(45)
    await h.finish(1, status="INVALID_ARGUMENT")  # 45 s after the last two: three within 60 s
    assert h.kinds() == ["security.invalid_argument_burst"]
    assert events_total("invalid_argument_burst") == before + 1


async def test_mass_export_counts_successful_reads_and_exports_only() -> None:
    h = rules(export_threshold=4)
    before = events_total("mass_export")
    await h.finish(1, status="OK", action="read_results")
    await h.finish(1, status="OK", action="export")
    await h.finish(5, status="OK", action="create")
    await h.finish(5, status="PERMISSION_DENIED", action="export")
    assert h.events == []
    await h.finish(2, status="OK", action="export")
    assert h.kinds() == ["security.mass_export"]
    assert h.events[0].details["count"] == 4
    assert events_total("mass_export") == before + 1


async def test_no_recorder_still_logs_and_counts() -> None:
    monitor = SecurityMonitor(AuthSettings.model_validate({"lockout": {"max_failures": 1}}), None)
    before = events_total("lockout")
    with capture_logs() as logs:
        await monitor.authentication_failed(key_id="", peer="ipv4:10.1.1.1:1", reason="missing", rpc="/x")
    assert events_total("lockout") == before + 1
    assert [line["kind"] for line in logs if line["event"] == "security_event"] == ["lockout"]


async def test_a_failing_recorder_does_not_break_the_caller() -> None:
    async def broken(event: AuditEvent) -> None:
        raise RuntimeError("audit store down")

    monitor = SecurityMonitor(AuthSettings.model_validate({"lockout": {"max_failures": 1}}), broken)
    with capture_logs() as logs:
        await monitor.authentication_failed(key_id="", peer="ipv4:10.1.1.2:1", reason="missing", rpc="/x")
    assert monitor.lockout_remaining("", "ipv4:10.1.1.2:1") > 0
    assert [line["event"] for line in logs] == ["security_event", "security_event_not_recorded"]


async def test_memory_stays_bounded_under_many_peers_and_keys() -> None:
    clock = FakeClock()
    settings = AuthSettings.model_validate(
        {"lockout": {"max_failures": 3}, "rules": {"not_found_threshold": 5}}
    )
    monitor = SecurityMonitor(settings, None, clock, max_entries=100)
    for index in range(5000):
        await monitor.authentication_failed(
            key_id=f"key{index}", peer=f"ipv4:10.{index // 256 % 256}.{index % 256}.1:1", reason="x", rpc="/x"
        )
        actor = Principal(actor=f"key:a{index}", tenant_id="t", role=Role.VIEWER)
        await monitor.call_finished(
            principal=actor, peer="", rpc="/x", action="read", status_code="NOT_FOUND"
        )
    assert monitor.tracked <= 300

    # Windows idle for longer than the window are dropped as soon as anything new arrives.
    clock.advance(61)
    await monitor.authentication_failed(key_id="", peer="ipv4:10.200.0.1:1", reason="x", rpc="/x")
    assert monitor.tracked <= 101


async def test_many_lockouts_stay_bounded() -> None:
    clock = FakeClock()
    monitor = SecurityMonitor(
        AuthSettings.model_validate({"lockout": {"max_failures": 1}}), None, clock, max_entries=50
    )
    for index in range(500):
        clock.advance(0.01)
        await monitor.authentication_failed(
            key_id="", peer=f"ipv4:10.0.{index // 256}.{index % 256}:1", reason="x", rpc="/x"
        )
    assert monitor.tracked <= 100
    # The most recent lockouts are the ones kept.
    assert monitor.lockout_remaining("", "ipv4:10.0.1.243:1") > 0


async def test_reconfigure_applies_new_thresholds() -> None:
    h = lockout(max_failures=5)
    await h.fail(2)
    h.monitor.reconfigure(AuthSettings.model_validate({"lockout": {"max_failures": 3}}))
    await h.fail()
    assert h.monitor.lockout_remaining("", "ipv4:10.0.0.1:1") > 0
