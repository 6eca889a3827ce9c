"""The audit trail over a real store: the hash chain, what verification detects, export, retention
with signed checkpoints, and appends racing from threads, processes and gateways sharing PostgreSQL.

Tampering is done the way an intruder with database access would: plain SQL on the tables.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from briefxai_common.config import ConfigError
from briefxai_gateway.security.audit import (
    AuditChainBroken,
    AuditEvent,
    AuditRecordRow,
    AuditTrail,
    AuditVerification,
    record_hash,
)
from briefxai_gateway.security_settings import AuditSettings
from briefxai_gateway.store import Store

pytest_plugins = ["tests.support.postgres"]

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
KEY = b"a checkpoint key of enough bytes\n"


class Clock:
    """T0, then one minute later on each call: record n (from 1) is stamped T0 + (n - 1) minutes."""

    def __init__(self) -> None:
        self.now = T0 - timedelta(minutes=1)
        self.lock = threading.Lock()

    def __call__(self) -> datetime:
        with self.lock:
            self.now += timedelta(minutes=1)
            return self.now


def event(n: int, tenant: str = "acme", action: str = "read") -> AuditEvent:
    return AuditEvent(
        actor=f"key{n % 3}",
        tenant_id=tenant,
        peer="ipv4:127.0.0.1:5000",
        rpc="/briefxai.gateway.v1.AnalysisService/GetAnalysisResults",
        resource=f"analyses/a{n}",
        action=action,
        outcome="ok",
        trace_id=f"{n:032x}",
        details={"n": n, "note": "Ünïcödé ✓"},
    )


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "audit.key"
    path.write_bytes(KEY)
    return path


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store(f"sqlite:///{tmp_path}/gateway.db")
    db.migrate()
    yield db
    db.close()


def settings(key_file: Path | None, retention_days: float = 30.0) -> AuditSettings:
    return AuditSettings.model_validate(
        {"retention_days": retention_days, "checkpoint_key_file": str(key_file) if key_file else ""}
    )


@pytest.fixture
def trail(store: Store, key_file: Path) -> AuditTrail:
    return AuditTrail(store, settings(key_file), clock=Clock())


async def fill(trail: AuditTrail, count: int, start: int = 1, tenant: str = "acme") -> None:
    for n in range(start, start + count):
        await trail.record(event(n, tenant))


def sql(store: Store, statement: str, **params: Any) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


def stored(store: Store, sequence: int) -> AuditRecordRow:
    return store.audit_records_after(sequence - 1, 1)[0]


async def exported(trail: AuditTrail, **window: Any) -> list[AuditRecordRow]:
    records: list[AuditRecordRow] = []
    async for chunk in trail.export(window.get("start"), window.get("end"), window.get("tenant_id")):
        records.extend(chunk)
    return records


def failed(result: AuditVerification, sequence: int, *words: str) -> bool:
    return (
        not result.intact
        and result.first_bad_sequence == sequence
        and all(word in result.reason for word in words)
    )


def auditor_hash(record: dict[str, Any]) -> str:
    """The hash as an external auditor computes it from the documented canonical form alone."""
    fields = {k: v for k, v in record.items() if k != "hash"}
    fields["time"] = record["time"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


async def test_a_chain_of_records_verifies_and_hashes_as_documented(trail: AuditTrail) -> None:
    await fill(trail, 30)

    assert await trail.verify() == AuditVerification(True, 30, 0, "", 0)
    records = await exported(trail)
    assert [r.sequence for r in records] == list(range(1, 31))
    assert records[0].previous_hash == "0" * 64
    assert all(b.previous_hash == a.hash for a, b in itertools.pairwise(records))
    assert all(auditor_hash(r.__dict__) == r.hash for r in records)
    assert json.loads(records[4].details_json) == {"n": 5, "note": "Ünïcödé ✓"}
    assert records[4].time == T0 + timedelta(minutes=4)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET actor = 'someone else' WHERE sequence = 5",
        "UPDATE audit_log SET details = '{}' WHERE sequence = 5",
        "UPDATE audit_log SET outcome = 'denied' WHERE sequence = 5",
        "UPDATE audit_log SET time = '2026-01-01 12:30:00' WHERE sequence = 5",
    ],
)
async def test_an_edited_record_is_named(trail: AuditTrail, store: Store, statement: str) -> None:
    await fill(trail, 10)
    sql(store, statement)

    assert failed(await trail.verify(), 5, "edited")


async def test_an_edited_record_with_its_hash_recomputed_is_named(trail: AuditTrail, store: Store) -> None:
    await fill(trail, 10)
    forged = AuditRecordRow(**{**stored(store, 5).__dict__, "action": "nothing", "hash": ""})
    sql(
        store,
        "UPDATE audit_log SET action = 'nothing', hash = :hash WHERE sequence = 5",
        hash=record_hash(forged),
    )

    assert failed(await trail.verify(), 5, "edited")


async def test_a_record_deleted_in_the_middle_is_named(trail: AuditTrail, store: Store) -> None:
    await fill(trail, 10)
    sql(store, "DELETE FROM audit_log WHERE sequence = 5")

    assert failed(await trail.verify(), 5, "missing")
    # The next append continues the chain after it: the gap stays visible.
    await fill(trail, 1, start=11)
    assert failed(await trail.verify(), 5, "missing")


async def test_deleting_the_newest_records_is_detected(trail: AuditTrail, store: Store) -> None:
    await fill(trail, 10)
    sql(store, "DELETE FROM audit_log WHERE sequence > 7")

    assert failed(await trail.verify(), 8, "missing", "newest")
    await fill(trail, 1, start=11)
    assert failed(await trail.verify(), 8, "missing")


async def test_a_chain_head_rewritten_to_hide_a_truncation_fails_its_signature(
    trail: AuditTrail, store: Store
) -> None:
    await fill(trail, 10)
    seven = stored(store, 7)
    sql(store, "DELETE FROM audit_log WHERE sequence > 7")
    sql(store, "UPDATE audit_head SET sequence = 7, hash = :hash", hash=seven.hash)

    assert failed(await trail.verify(), 8, "not signed")


async def test_rows_inserted_beyond_the_head_are_detected(trail: AuditTrail, store: Store) -> None:
    await fill(trail, 3)
    sql(
        store,
        "INSERT INTO audit_log SELECT 4, time, actor, tenant_id, peer, rpc, resource, action, outcome, "
        "status_code, trace_id, details, hash, hash FROM audit_log WHERE sequence = 3",
    )

    assert failed(await trail.verify(), 4, "beyond the chain head")


async def test_a_store_failure_is_counted_not_raised(trail: AuditTrail, store: Store) -> None:
    await fill(trail, 2)
    sql(store, "DELETE FROM audit_head")
    before = REGISTRY.get_sample_value("briefxai_audit_write_failures_total") or 0.0

    await trail.record(event(3))

    assert REGISTRY.get_sample_value("briefxai_audit_write_failures_total") == before + 1
    assert failed(await trail.verify(), 1, "chain head")
    assert [r.sequence for r in await exported(trail)] == [1, 2]


async def test_fields_are_stored_as_every_database_can_hold_them(trail: AuditTrail, store: Store) -> None:
    await trail.record(
        AuditEvent(
            actor="a\x00b", tenant_id="t", peer="p", rpc="r", resource="x" * 600, action="read", outcome="ok"
        )
    )

    (record,) = await exported(trail)
    assert (record.actor, len(record.resource), record.details_json) == ("a\ufffdb", 512, "{}")
    assert (await trail.verify()).intact


async def test_export_by_window_and_tenant_oldest_first_in_chunks(trail: AuditTrail) -> None:
    for n in range(1, 1002):
        await trail.record(event(n, tenant="acme" if n % 2 else "globex"))
    minute = timedelta(minutes=1)

    chunks = [len(chunk) async for chunk in trail.export(None, None, None)]
    window = await exported(trail, start=T0 + 10 * minute, end=T0 + 20 * minute)
    globex = await exported(trail, start=T0 + 10 * minute, end=T0 + 20 * minute, tenant_id="globex")
    assert chunks == [500, 500, 1]
    assert [r.sequence for r in window] == list(range(11, 21))
    assert [r.sequence for r in globex] == [12, 14, 16, 18, 20]
    assert [r.sequence for r in await exported(trail, end=T0 + 2 * minute)] == [1, 2]
    assert (await trail.verify()).records_checked == 1001


async def test_retention_summarises_old_records_into_a_checkpoint_that_verifies(
    trail: AuditTrail, store: Store
) -> None:
    await fill(trail, 10)
    await fill(trail, 5, start=11, tenant="globex")
    # Retention 30 days: at T0 + 30 days + 10 minutes the first 10 records are older than that.
    now = T0 + timedelta(days=30, minutes=10)

    assert await trail.apply_retention(now) == 10
    assert await trail.apply_retention(now) == 0
    assert await trail.verify() == AuditVerification(True, 5, 0, "", 10)
    (checkpoint,) = store.audit_chain_state().checkpoints
    assert (checkpoint.through_sequence, checkpoint.record_count) == (10, 10)
    assert (checkpoint.first_time, checkpoint.last_time) == (T0, T0 + timedelta(minutes=9))
    assert json.loads(checkpoint.summary_json) == {
        "by_action": {"read": 10},
        "by_outcome": {"ok": 10},
        "by_tenant": {"acme": 10},
    }

    await fill(trail, 3, start=16)
    assert await trail.apply_retention(now + timedelta(days=1)) == 8
    assert await trail.verify() == AuditVerification(True, 0, 0, "", 18)
    await fill(trail, 2, start=19)
    assert await trail.verify() == AuditVerification(True, 2, 0, "", 18)
    assert [r.sequence for r in await exported(trail)] == [19, 20]


@pytest.mark.parametrize(
    ("statement", "sequence", "words"),
    [
        ("UPDATE audit_checkpoints SET record_count = 9", 1, ("signature",)),
        ("UPDATE audit_checkpoints SET summary = '{}'", 1, ("signature",)),
        ("UPDATE audit_checkpoints SET through_hash = previous_hash", 1, ("signature",)),
        ("DELETE FROM audit_log WHERE sequence = 11", 11, ("missing",)),
        ("UPDATE audit_log SET actor = 'x' WHERE sequence = 11", 11, ("edited",)),
        ("DELETE FROM audit_checkpoints", 1, ("missing",)),
    ],
)
async def test_tampering_around_a_checkpoint_is_detected(
    trail: AuditTrail, store: Store, statement: str, sequence: int, words: tuple[str, ...]
) -> None:
    await fill(trail, 15)
    await trail.apply_retention(T0 + timedelta(days=30, minutes=10))
    sql(store, statement)

    assert failed(await trail.verify(), sequence, *words)


async def test_a_forged_first_record_after_a_checkpoint_is_detected(trail: AuditTrail, store: Store) -> None:
    await fill(trail, 15)
    await trail.apply_retention(T0 + timedelta(days=30, minutes=10))
    first = stored(store, 11)
    forged = AuditRecordRow(**{**first.__dict__, "previous_hash": "1" * 64, "hash": ""})
    sql(
        store,
        "UPDATE audit_log SET previous_hash = :previous, hash = :hash WHERE sequence = 11",
        previous="1" * 64,
        hash=record_hash(forged),
    )

    assert failed(await trail.verify(), 11, "checkpoint")


async def test_a_deleted_older_checkpoint_is_detected(trail: AuditTrail, store: Store) -> None:
    await fill(trail, 15)
    await trail.apply_retention(T0 + timedelta(days=30, minutes=5))
    await trail.apply_retention(T0 + timedelta(days=30, minutes=10))
    assert [c.through_sequence for c in store.audit_chain_state().checkpoints] == [5, 10]
    sql(store, "DELETE FROM audit_checkpoints WHERE through_sequence = 5")

    assert failed(await trail.verify(), 1, "follow on")


async def test_retention_refuses_to_summarise_a_broken_chain(trail: AuditTrail, store: Store) -> None:
    await fill(trail, 15)
    sql(store, "UPDATE audit_log SET actor = 'x' WHERE sequence = 3")

    with pytest.raises(AuditChainBroken) as raised:
        await trail.apply_retention(T0 + timedelta(days=30, minutes=10))

    assert raised.value.verification.first_bad_sequence == 3
    assert store.audit_chain_state().checkpoints == []
    assert len(await exported(trail)) == 15


async def test_a_checkpoint_needs_the_key_it_was_signed_with(
    trail: AuditTrail, store: Store, tmp_path: Path
) -> None:
    await fill(trail, 15)
    await trail.apply_retention(T0 + timedelta(days=30, minutes=10))
    other_key = tmp_path / "other.key"
    other_key.write_bytes(b"another key entirely")

    assert failed(await AuditTrail(store, settings(other_key)).verify(), 1, "signature")
    assert failed(await AuditTrail(store, settings(None, 0)).verify(), 1, "checkpoint_key_file")


@pytest.mark.parametrize("problem", ["unset", "missing", "empty"])
def test_retention_without_a_readable_key_is_a_configuration_error(
    store: Store, tmp_path: Path, problem: str
) -> None:
    path = tmp_path / "audit.key"
    if problem == "empty":
        path.write_bytes(b" \n")

    with pytest.raises(ConfigError, match=re.escape("gateway.audit.checkpoint_key_file")):
        AuditTrail(store, settings(None if problem == "unset" else path))


async def test_without_retention_no_key_is_needed_and_nothing_is_deleted(store: Store) -> None:
    trail = AuditTrail(store, settings(None, retention_days=0), clock=Clock())
    await fill(trail, 3)

    assert await trail.apply_retention(T0 + timedelta(days=3650)) == 0
    assert await trail.verify() == AuditVerification(True, 3, 0, "", 0)


async def test_appends_from_many_threads_make_one_gapless_chain(trail: AuditTrail, store: Store) -> None:
    await asyncio.gather(*(trail.record(event(n)) for n in range(1, 201)))

    assert await trail.verify() == AuditVerification(True, 200, 0, "", 0)
    assert store.audit_chain_state().max_sequence == 200


async def test_verification_while_records_are_appended_sees_an_intact_chain(trail: AuditTrail) -> None:
    await fill(trail, 1500)

    verification = asyncio.ensure_future(trail.verify())
    await asyncio.gather(*(trail.record(event(n)) for n in range(1501, 1601)))
    result = await verification

    assert result.intact and result.records_checked >= 1500
    assert await trail.verify() == AuditVerification(True, 1600, 0, "", 0)


# Appends from another process to the same SQLite file (argv: url, key file, count).
APPEND = """
import asyncio, sys
from briefxai_gateway.security.audit import AuditEvent, AuditTrail
from briefxai_gateway.security_settings import AuditSettings
from briefxai_gateway.store import Store

async def main() -> None:
    settings = AuditSettings.model_validate({"checkpoint_key_file": sys.argv[2]})
    trail = AuditTrail(Store(sys.argv[1]), settings)
    print("ready", flush=True)
    sys.stdin.readline()
    for n in range(int(sys.argv[3])):
        await trail.record(AuditEvent("proc", "t", "p", "r", f"x/{n}", "create", "ok"))

asyncio.run(main())
"""


async def test_appends_from_two_processes_on_one_sqlite_file_make_one_gapless_chain(
    trail: AuditTrail, store: Store, key_file: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            APPEND,
            store.url,
            str(key_file),
            "60",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        for _ in range(2)
    ]
    for process in processes:
        assert process.stdout is not None and (await process.stdout.readline()).strip() == b"ready"
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        await process.stdin.drain()
    await fill(trail, 60)
    assert [await process.wait() for process in processes] == [0, 0]

    assert await trail.verify() == AuditVerification(True, 180, 0, "", 0)


def together(count: int, work: Callable[[int], None]) -> None:
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        barrier.wait()
        work(index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


async def test_two_gateways_on_one_postgresql_make_one_gapless_chain_with_retention(
    postgres_url: str, key_file: Path
) -> None:
    gateways = [Store(postgres_url) for _ in range(2)]
    try:
        gateways[0].migrate()
        clock = Clock()
        trails = [AuditTrail(gateway, settings(key_file), clock=clock) for gateway in gateways]

        def append(index: int) -> None:
            async def forty() -> None:
                for n in range(40):
                    await trails[index % 2].record(event(n, tenant=f"t{index}"))

            asyncio.run(forty())

        await asyncio.to_thread(together, 6, append)
        await trails[0].record(
            AuditEvent("a\x00b", "t", "ipv6:[::1]:1", "r", "x" * 600, "read", "ok", details={"k": "\x00"})
        )

        # Threads take their times and their sequences in different orders: records after them,
        # one at a time, are the first ones retention keeps.
        await fill(trails[1], 10)

        assert await trails[1].verify() == AuditVerification(True, 251, 0, "", 0)
        assert await trails[0].apply_retention(T0 + timedelta(days=30, minutes=241)) == 241
        assert await trails[1].verify() == AuditVerification(True, 10, 0, "", 241)
        sql(gateways[0], "UPDATE audit_checkpoints SET record_count = 99")
        assert failed(await trails[1].verify(), 1, "signature")
    finally:
        for gateway in gateways:
            gateway.close()
