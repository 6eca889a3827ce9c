"""The audit trail: an append-only, hash-chained record of who did what through the gateway.

Records
    One row of ``audit_log`` per :class:`AuditEvent`, numbered 1, 2, 3, ... without gaps. Each row
    carries the hash of the row before it (``previous_hash``) and its own (``hash``), so that editing
    or deleting a row breaks the chain from there on. Appends are serialised across threads and
    gateways (``store/audit.py``); there is no update, and rows are deleted only by retention.

Canonical form (how to recompute a hash outside BriefXAI)
    ``hash`` is the lowercase hex SHA-256 of the UTF-8 bytes of one JSON object holding every field of
    the record but ``hash``: ``action``, ``actor``, ``details_json``, ``outcome``, ``peer``,
    ``previous_hash``, ``resource``, ``rpc``, ``sequence``, ``status_code``, ``tenant_id``, ``time``,
    ``trace_id``. Keys sorted, no whitespace, non-ASCII characters written as themselves: Python's
    ``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``, which for these
    values (strings and one integer) is also their RFC 8785 (JCS) form. ``sequence`` is a JSON integer;
    ``time`` is ISO 8601 in UTC with microseconds and a ``Z`` (``2026-12-03T09:15:00.250000Z``);
    ``details_json`` is the stored JSON text as a string (itself written the same canonical way).
    ``previous_hash`` of record 1 is 64 zeros; of the first record after a retention checkpoint, the
    checkpoint's ``through_hash``.

Retention checkpoints
    With ``retention_days`` > 0, :meth:`AuditTrail.apply_retention` summarises the oldest records (up
    to the first one still within the retention) into an ``audit_checkpoints`` row: their count, first
    and last time, counts by action, outcome and tenant, ``through_sequence``/``through_hash`` (the
    last one summarised) and ``previous_hash`` (the previous checkpoint's ``through_hash``), then
    deletes them, in one transaction. It first checks the records it summarises and refuses
    (:class:`AuditChainBroken`) when they do not check out, so a signed checkpoint never hides an edit.
    The checkpoint is signed: hex HMAC-SHA256, keyed with the bytes of ``checkpoint_key_file``
    (surrounding whitespace ignored), of the canonical JSON (as above) of ``{"kind":
    "audit_checkpoint", "create_time", "first_time", "last_time", "previous_hash", "record_count",
    "summary_json", "through_hash", "through_sequence"}`` (times as above, ``null`` when absent).

Chain head
    ``audit_head`` names the newest record ever appended (sequence and hash); the appender continues
    from it, and, when a key is configured, signs it on each append: HMAC-SHA256 of the canonical JSON
    of ``{"kind": "audit_head", "hash", "sequence"}``.

What :meth:`AuditTrail.verify` detects (``first_bad_sequence`` names the first record at fault)
    - an edited record (its hash no longer matches its content);
    - an edited record whose hash was recomputed (the next record's ``previous_hash`` no longer
      matches: reported as the earlier of the two);
    - a deleted record in the middle, or the first one after a checkpoint (a gap in the sequence);
    - a forged, edited or deleted checkpoint (signature, or checkpoints that no longer follow on from
      each other and from record 1), and records still stored that a checkpoint covers;
    - deletion of the newest records: the head names a record that is no longer there; with a key,
      a head rewritten to hide that fails its signature; rows stored beyond the head (inserted, not
      appended) are reported too.

What it cannot detect
    - anything done by someone who holds the checkpoint key and the database (they can re-sign);
    - without a key configured: a truncation whose author also rewrote the head row to match (sign
      the head by setting ``checkpoint_key_file`` even with ``retention_days`` 0);
    - rolling the whole database, head included, back to an earlier copy (an earlier valid state),
      or emptying the trail and resetting the head to its initial row (it then looks new); anchor
      the head outside the database (keep exports, or the newest hash) if that matters.

Keys
    Changing the key makes every existing signature fail: keep it for the life of the trail. A head
    written while no key was configured is reported as unsigned once one is, until the next append
    signs it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter as Tally
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from sqlalchemy import Column

from briefxai_common.config import ConfigError
from briefxai_common.logging import get_logger

from .. import schema
from ..concurrency import in_thread
from ..security_settings import AuditSettings

if TYPE_CHECKING:
    from ..store import Store

log = get_logger(__name__)

# previous_hash of record 1 (and of the first checkpoint).
GENESIS_HASH = "0" * 64
# Records per read while verifying or summarising, and per batch of an export.
VERIFY_CHUNK = 1000
EXPORT_CHUNK = 500
# Verification starts over (up to this many times) when a retention ran while it read the records.
VERIFY_ATTEMPTS = 3
KEY_SETTING = "gateway.audit.checkpoint_key_file"

AUDIT_WRITE_FAILURES = Counter(
    "briefxai_audit_write_failures_total",
    "Audit records that could not be written (the store failed); each is also logged at error.",
)


@dataclass(frozen=True)
class AuditEvent:
    """One thing to record: who (actor, tenant, peer), what (rpc, resource, action, outcome, status
    code), the trace, and further facts (never conversation text)."""

    actor: str
    tenant_id: str
    peer: str
    rpc: str
    resource: str
    action: str
    outcome: str  # ok, denied, failed
    status_code: str = "OK"
    trace_id: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditRecordRow:
    """One stored record; the fields of the ``AuditRecord`` message, one for one."""

    sequence: int
    time: datetime
    actor: str
    tenant_id: str
    peer: str
    rpc: str
    resource: str
    action: str
    outcome: str
    status_code: str
    trace_id: str
    details_json: str
    previous_hash: str
    hash: str


@dataclass(frozen=True)
class AuditCheckpoint:
    """A retention checkpoint: records ``through_sequence - record_count + 1 .. through_sequence``,
    summarised and deleted."""

    through_sequence: int
    through_hash: str
    previous_hash: str
    record_count: int
    first_time: datetime | None
    last_time: datetime | None
    summary_json: str
    create_time: datetime
    signature: str


@dataclass(frozen=True)
class AuditHead:
    """The newest record ever appended (sequence 0 and 64 zeros before the first)."""

    sequence: int
    hash: str
    signature: str


@dataclass(frozen=True)
class AuditChainState:
    """The head (None when its row is missing), the checkpoints oldest first, and the highest stored
    sequence (0 when none), the head and that highest sequence read in one statement."""

    head: AuditHead | None
    checkpoints: list[AuditCheckpoint]
    max_sequence: int


@dataclass(frozen=True)
class AuditVerification:
    """The outcome of :meth:`AuditTrail.verify` (the ``VerifyAuditLogResponse`` fields)."""

    intact: bool
    records_checked: int
    first_bad_sequence: int  # 0 when intact
    reason: str  # empty when intact
    records_checkpointed: int


class AuditChainBroken(Exception):
    """Retention found records that do not check out: it summarised and deleted nothing."""

    def __init__(self, verification: AuditVerification) -> None:
        self.verification = verification
        super().__init__(
            f"audit record {verification.first_bad_sequence}: {verification.reason}; retention skipped"
        )


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, non-ASCII as itself (RFC 8785 for strings and integers); values
    JSON cannot hold (datetimes, enums) as their text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def format_time(value: datetime) -> str:
    """ISO 8601 in UTC with microseconds and ``Z``; a naive value is taken as UTC."""
    utc = value.astimezone(UTC) if value.tzinfo is not None else value
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_record(record: AuditRecordRow) -> bytes:
    """The bytes whose SHA-256 is the record's hash: every field but ``hash``."""
    return canonical_json(
        {
            "action": record.action,
            "actor": record.actor,
            "details_json": record.details_json,
            "outcome": record.outcome,
            "peer": record.peer,
            "previous_hash": record.previous_hash,
            "resource": record.resource,
            "rpc": record.rpc,
            "sequence": record.sequence,
            "status_code": record.status_code,
            "tenant_id": record.tenant_id,
            "time": format_time(record.time),
            "trace_id": record.trace_id,
        }
    ).encode("utf-8")


def record_hash(record: AuditRecordRow) -> str:
    return hashlib.sha256(canonical_record(record)).hexdigest()


def canonical_checkpoint(checkpoint: AuditCheckpoint) -> bytes:
    """The bytes a checkpoint's signature covers: every field but ``signature``."""

    def optional(value: datetime | None) -> str | None:
        return None if value is None else format_time(value)

    return canonical_json(
        {
            "kind": "audit_checkpoint",
            "create_time": format_time(checkpoint.create_time),
            "first_time": optional(checkpoint.first_time),
            "last_time": optional(checkpoint.last_time),
            "previous_hash": checkpoint.previous_hash,
            "record_count": checkpoint.record_count,
            "summary_json": checkpoint.summary_json,
            "through_hash": checkpoint.through_hash,
            "through_sequence": checkpoint.through_sequence,
        }
    ).encode("utf-8")


def canonical_head(sequence: int, hash_: str) -> bytes:
    return canonical_json({"kind": "audit_head", "hash": hash_, "sequence": sequence}).encode("utf-8")


def sign(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def load_checkpoint_key(settings: AuditSettings) -> bytes | None:
    """The checkpoint key (None when no file is configured); ConfigError naming the setting when
    retention needs one and there is none, or the file is unreadable or empty."""
    if not settings.checkpoint_key_file:
        if settings.retention_days > 0:
            raise ConfigError(
                f"{KEY_SETTING} is required when gateway.audit.retention_days > 0: retention "
                "checkpoints are signed with it (a file of random bytes, e.g. `openssl rand -hex 32`)"
            )
        return None
    path = Path(settings.checkpoint_key_file).expanduser()
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"{KEY_SETTING}: cannot read {path}: {exc.strerror or exc}") from exc
    if not key:
        raise ConfigError(f"{KEY_SETTING}: {path} is empty")
    return key


def _field(column: Column[Any], value: str) -> str:
    """``value`` as the column can store it everywhere: no NUL (PostgreSQL refuses it), no lone
    surrogate (not UTF-8), at most the column's length."""
    text = value.replace("\x00", "\ufffd").encode("utf-8", "backslashreplace").decode("utf-8")
    length = getattr(column.type, "length", None)
    return text[:length] if length else text


def _failure(sequence: int, reason: str, checked: int, checkpointed: int) -> AuditVerification:
    return AuditVerification(False, checked, sequence, reason, checkpointed)


@dataclass
class _ChainWalk:
    """Checks stored records in sequence order against the chain: from ``expected`` (the next
    sequence) and ``previous_hash``; the first failure is kept and nothing after it is checked."""

    expected: int
    previous_hash: str
    covered_through: int  # records up to here belong to checkpoints
    previous_stored: bool = False
    checked: int = 0
    failure: tuple[int, str] | None = None
    first_time: datetime | None = None
    last_time: datetime | None = None
    by_action: Tally[str] = field(default_factory=Tally)
    by_outcome: Tally[str] = field(default_factory=Tally)
    by_tenant: Tally[str] = field(default_factory=Tally)

    def feed(self, records: Sequence[AuditRecordRow], summarise: bool = False) -> None:
        for record in records:
            if self.failure is not None:
                return
            self.checked += 1
            self.failure = self._check(record)
            if self.failure is None:
                self.expected += 1
                self.previous_hash = record.hash
                self.previous_stored = True
                if summarise:
                    self._summarise(record)

    def _check(self, record: AuditRecordRow) -> tuple[int, str] | None:
        sequence = record.sequence
        if sequence <= self.covered_through:
            return sequence, (
                f"record {sequence} is still stored although a checkpoint summarised it "
                f"(through {self.covered_through})"
            )
        if sequence > self.expected:
            return self.expected, (
                f"record {self.expected} is missing (deleted): the next stored record is {sequence}"
            )
        if record.previous_hash != self.previous_hash:
            if self.previous_stored:
                return sequence - 1, (
                    f"record {sequence}'s previous_hash does not match the hash of record "
                    f"{sequence - 1}: record {sequence - 1} was edited and its hash recomputed (or "
                    f"record {sequence}'s previous_hash was edited)"
                )
            origin = "the checkpoint before it" if sequence > 1 else "the start of the chain"
            return sequence, f"record {sequence}'s previous_hash does not continue from {origin}"
        if record_hash(record) != record.hash:
            return sequence, f"record {sequence} was edited: its hash does not match its content"
        return None

    def _summarise(self, record: AuditRecordRow) -> None:
        if self.first_time is None or record.time < self.first_time:
            self.first_time = record.time
        if self.last_time is None or record.time > self.last_time:
            self.last_time = record.time
        self.by_action[record.action] += 1
        self.by_outcome[record.outcome] += 1
        self.by_tenant[record.tenant_id] += 1

    def summary_json(self) -> str:
        return canonical_json(
            {
                "by_action": dict(self.by_action),
                "by_outcome": dict(self.by_outcome),
                "by_tenant": dict(self.by_tenant),
            }
        )


class AuditTrail:
    """Records events, verifies the chain, exports records, and applies retention.

    Raises ConfigError (naming ``gateway.audit.checkpoint_key_file``) when retention is on without a
    readable key, or a configured key file is unreadable or empty."""

    def __init__(
        self,
        store: Store,
        settings: AuditSettings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._settings = settings
        self._key = load_checkpoint_key(settings)
        # The time of each record (UTC); tests pass their own.
        self._clock = clock

    @property
    def settings(self) -> AuditSettings:
        return self._settings

    async def record(self, event: AuditEvent) -> None:
        """Appends ``event`` as the next record. A failure is logged at error and counted in
        ``briefxai_audit_write_failures_total``, never raised: what it records has already happened."""
        try:
            build = self._builder(event, self._clock())
            await in_thread(self._store.append_audit_record, build, self._sign_head)
        except Exception:
            AUDIT_WRITE_FAILURES.inc()
            log.exception(
                "audit_record_not_written",
                action=event.action,
                rpc=event.rpc,
                actor=event.actor,
                tenant=event.tenant_id,
                outcome=event.outcome,
            )

    def _builder(self, event: AuditEvent, time: datetime) -> Callable[[int, str], AuditRecordRow]:
        """The record of ``event`` at ``time``, once its sequence and previous hash are known."""
        time = (time if time.tzinfo is not None else time.replace(tzinfo=UTC)).astimezone(UTC)
        c = schema.audit_log.c
        fields = {
            "actor": _field(c.actor, event.actor),
            "tenant_id": _field(c.tenant_id, event.tenant_id),
            "peer": _field(c.peer, event.peer),
            "rpc": _field(c.rpc, event.rpc),
            "resource": _field(c.resource, event.resource),
            "action": _field(c.action, event.action),
            "outcome": _field(c.outcome, event.outcome),
            "status_code": _field(c.status_code, event.status_code),
            "trace_id": _field(c.trace_id, event.trace_id),
            "details_json": _field(c.details, canonical_json(event.details)),
        }

        def build(sequence: int, previous_hash: str) -> AuditRecordRow:
            unsealed = AuditRecordRow(
                sequence=sequence, time=time, previous_hash=previous_hash, hash="", **fields
            )
            return replace(unsealed, hash=record_hash(unsealed))

        return build

    def _sign_head(self, sequence: int, hash_: str) -> str:
        return "" if self._key is None else sign(self._key, canonical_head(sequence, hash_))

    async def verify(self) -> AuditVerification:
        """Checks the checkpoints, every stored record (streamed, ``VERIFY_CHUNK`` at a time) and the
        chain head. Records appended while it runs are left to the next verification."""
        for _ in range(VERIFY_ATTEMPTS):
            result = await self._verify_once()
            if result is not None:
                return result
        return _failure(0, "retention kept changing the checkpoints while verifying", 0, 0)

    async def _verify_once(self) -> AuditVerification | None:
        """The verification, or None when the checkpoints changed while it ran (start over)."""
        state = await in_thread(self._store.audit_chain_state)
        walk, failure = self._check_checkpoints(state.checkpoints)
        checkpointed = walk.covered_through
        if failure is not None:
            return failure
        head = state.head
        if head is None:
            return _failure(
                checkpointed + 1, "the chain head (the audit_head row) is missing", 0, checkpointed
            )
        after = 0
        while walk.failure is None:
            after = await in_thread(self._walk_chunk, walk, after, head.sequence, False)
            if after == 0:
                break
        if walk.failure is not None:
            if await self._checkpoints_changed(state):
                return None
            sequence, reason = walk.failure
            return _failure(sequence, reason, walk.checked, checkpointed)
        last = walk.expected - 1
        if last < head.sequence:
            if await self._checkpoints_changed(state):
                return None
            return _failure(
                last + 1,
                f"records {last + 1}..{head.sequence} are missing: the chain head names record "
                f"{head.sequence} (the newest records were deleted)",
                walk.checked,
                checkpointed,
            )
        if head.hash != walk.previous_hash or last > head.sequence:
            return _failure(
                head.sequence,
                f"the chain head does not match record {head.sequence}",
                walk.checked,
                checkpointed,
            )
        unsigned_start = head.sequence == 0 and not head.signature
        if (
            self._key is not None
            and not unsigned_start
            and not hmac.compare_digest(head.signature, self._sign_head(head.sequence, head.hash))
        ):
            return _failure(
                head.sequence + 1,
                f"the chain head (record {head.sequence}) is not signed with the checkpoint key: it "
                f"was edited, and records after {head.sequence} may have been deleted",
                walk.checked,
                checkpointed,
            )
        now = await in_thread(self._store.audit_chain_state)
        if now.head is not None and now.max_sequence > now.head.sequence:
            return _failure(
                now.head.sequence + 1,
                f"record {now.head.sequence + 1} is stored beyond the chain head (inserted, not appended)",
                walk.checked,
                checkpointed,
            )
        return AuditVerification(True, walk.checked, 0, "", checkpointed)

    def _check_checkpoints(
        self, checkpoints: Sequence[AuditCheckpoint]
    ) -> tuple[_ChainWalk, AuditVerification | None]:
        """A walk positioned after the checkpoints, and the first checkpoint that fails, if any."""
        through, previous_hash = 0, GENESIS_HASH
        for checkpoint in checkpoints:
            first = through + 1
            if self._key is None:
                reason = (
                    f"checkpoints are stored but {KEY_SETTING} is not set: their signatures cannot be checked"
                )
                return _ChainWalk(first, previous_hash, through), _failure(first, reason, 0, through)
            if not hmac.compare_digest(
                checkpoint.signature, sign(self._key, canonical_checkpoint(checkpoint))
            ):
                reason = (
                    f"the checkpoint through record {checkpoint.through_sequence} does not match its "
                    "signature (edited or forged)"
                )
                return _ChainWalk(first, previous_hash, through), _failure(first, reason, 0, through)
            if (
                checkpoint.through_sequence - checkpoint.record_count != through
                or checkpoint.previous_hash != previous_hash
            ):
                reason = (
                    f"the checkpoint through record {checkpoint.through_sequence} does not follow on "
                    f"from record {through} (a checkpoint was deleted)"
                )
                return _ChainWalk(first, previous_hash, through), _failure(first, reason, 0, through)
            through, previous_hash = checkpoint.through_sequence, checkpoint.through_hash
        return _ChainWalk(through + 1, previous_hash, through), None

    async def _checkpoints_changed(self, before: AuditChainState) -> bool:
        now = await in_thread(self._store.audit_chain_state)
        return [c.through_sequence for c in now.checkpoints] != [
            c.through_sequence for c in before.checkpoints
        ]

    def _walk_chunk(self, walk: _ChainWalk, after: int, through: int, summarise: bool) -> int:
        """Feeds the records after ``after`` (up to ``through``) to ``walk``, one chunk; the last
        sequence read, or 0 when there were none. Runs in a worker thread (hashing is CPU work)."""
        records = self._store.audit_records_after(after, VERIFY_CHUNK, through=through)
        walk.feed(records, summarise)
        return records[-1].sequence if records else 0

    async def export(
        self, start: datetime | None, end: datetime | None, tenant_id: str | None
    ) -> AsyncIterator[list[AuditRecordRow]]:
        """Records with ``start <= time < end`` (unset: from the oldest; until now), of ``tenant_id``
        only when given, oldest first, ``EXPORT_CHUNK`` at a time."""
        end = end if end is not None else self._clock()
        after = 0
        while True:
            records = await in_thread(
                self._store.audit_records_after, after, EXPORT_CHUNK, None, start, end, tenant_id
            )
            if records:
                yield records
            if len(records) < EXPORT_CHUNK:
                return
            after = records[-1].sequence

    async def apply_retention(self, now: datetime) -> int:
        """Summarises the records older than ``retention_days`` into a signed checkpoint and deletes
        them; how many were deleted (0 with retention off, nothing old enough, or another gateway
        doing it at the same time). Raises AuditChainBroken, touching nothing, when the records to
        summarise (or the checkpoints before them) do not check out."""
        key = self._key
        if self._settings.retention_days <= 0 or key is None:
            return 0
        now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
        cutoff = now - timedelta(days=self._settings.retention_days)
        state = await in_thread(self._store.audit_chain_state)
        walk, failure = self._check_checkpoints(state.checkpoints)
        if failure is not None:
            raise AuditChainBroken(failure)
        previous_through, previous_hash = walk.covered_through, walk.previous_hash
        if state.head is None:
            raise AuditChainBroken(
                _failure(
                    previous_through + 1,
                    "the chain head (the audit_head row) is missing",
                    0,
                    previous_through,
                )
            )
        through = min(await in_thread(self._store.audit_retention_bound, cutoff), state.head.sequence)
        if through <= previous_through:
            return 0
        after = 0
        while walk.failure is None:
            after = await in_thread(self._walk_chunk, walk, after, through, True)
            if after == 0 or after >= through:
                break
        if walk.failure is None and walk.expected - 1 != through:
            walk.failure = (walk.expected, f"record {walk.expected} is missing (deleted)")
        if walk.failure is not None:
            sequence, reason = walk.failure
            raise AuditChainBroken(_failure(sequence, reason, walk.checked, previous_through))
        unsigned = AuditCheckpoint(
            through_sequence=through,
            through_hash=walk.previous_hash,
            previous_hash=previous_hash,
            record_count=through - previous_through,
            first_time=walk.first_time,
            last_time=walk.last_time,
            summary_json=walk.summary_json(),
            create_time=now.astimezone(UTC),
            signature="",
        )
        checkpoint = replace(unsigned, signature=sign(key, canonical_checkpoint(unsigned)))
        deleted = await in_thread(self._store.checkpoint_audit_records, checkpoint, previous_through)
        if deleted:
            log.info(
                "audit_retention",
                records=deleted,
                through_sequence=through,
                cutoff=cutoff.isoformat(),
            )
        return deleted
