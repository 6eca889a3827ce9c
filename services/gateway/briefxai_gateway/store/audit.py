"""The audit trail's rows: appends, the chain head, streamed reads, and retention checkpoints
(``security/audit.py`` holds the hashing, signing and checking).

The trail is global, not per tenant: these methods ignore the store's tenant (an export filters by
tenant when asked). It is append-only: there is no update, and records are deleted only together with
the insertion of the checkpoint that summarises them.

Appends are serialised, so that each record gets ``sequence = head + 1`` and ``previous_hash = head's
hash`` with no gap and no fork, then moves the head (``audit_head``) to itself, in one transaction:

- on PostgreSQL (several gateways may share it) under a transaction-level advisory lock with a fixed
  key;
- on SQLite under a process-level lock (the threads of one gateway) and a write transaction from the
  first statement (a no-op update of the head row), which SQLite's one-writer rule serialises across
  processes too.

A primary-key conflict (a sequence taken by another writer) is retried with the new head. The head,
not the table, is where an append continues from, so deleting the newest records leaves a gap that
the next append does not paper over.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from .. import schema
from ..security.audit import AuditChainState, AuditCheckpoint, AuditHead, AuditRecordRow
from .base import StoreBase, StoreInconsistent, aware

# The PostgreSQL advisory lock held by an append or a retention checkpoint (any fixed 64-bit number).
AUDIT_LOCK = 0x6272696566617564
# The one row of ``audit_head``.
HEAD_ID = 1
APPEND_ATTEMPTS = 3
# One gateway's threads append to a SQLite file one at a time.
_SQLITE_APPEND_LOCK = threading.Lock()


def _utc(value: datetime) -> datetime:
    """SQLite stores a datetime's fields without its zone: always write UTC."""
    return aware(value).astimezone(UTC)


def _record(row: Any) -> AuditRecordRow:
    return AuditRecordRow(
        sequence=int(row.sequence),
        time=aware(row.time),
        actor=row.actor,
        tenant_id=row.tenant_id,
        peer=row.peer,
        rpc=row.rpc,
        resource=row.resource,
        action=row.action,
        outcome=row.outcome,
        status_code=row.status_code,
        trace_id=row.trace_id,
        details_json=row.details,
        previous_hash=row.previous_hash,
        hash=row.hash,
    )


def _checkpoint(row: Any) -> AuditCheckpoint:
    return AuditCheckpoint(
        through_sequence=int(row.through_sequence),
        through_hash=row.through_hash,
        previous_hash=row.previous_hash,
        record_count=int(row.record_count),
        first_time=None if row.first_time is None else aware(row.first_time),
        last_time=None if row.last_time is None else aware(row.last_time),
        summary_json=row.summary,
        create_time=aware(row.create_time),
        signature=row.signature,
    )


class AuditRepository(StoreBase):
    """The rows of the audit trail, for :class:`~briefxai_gateway.security.audit.AuditTrail`."""

    @contextmanager
    def _audit_write(self) -> Iterator[Connection]:
        """A transaction that holds the audit trail's write lock (see the module's docstring)."""
        lock: AbstractContextManager[Any] = _SQLITE_APPEND_LOCK if self.dialect == "sqlite" else nullcontext()
        with lock, self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK})
            h = schema.audit_head.c
            touched = conn.execute(
                update(schema.audit_head).where(h.id == HEAD_ID).values(sequence=h.sequence)
            ).rowcount
            if not touched:
                raise StoreInconsistent(
                    "the audit trail's chain head (the audit_head row) is missing: it was deleted; "
                    "restore it from a backup"
                )
            yield conn

    def append_audit_record(
        self,
        build: Callable[[int, str], AuditRecordRow],
        sign_head: Callable[[int, str], str],
    ) -> AuditRecordRow:
        """Appends ``build(sequence, previous_hash)`` after the chain head and moves the head to it
        (signed with ``sign_head(sequence, hash)``); the record as stored."""
        for attempt in range(1, APPEND_ATTEMPTS + 1):
            try:
                return self._append_audit_record(build, sign_head)
            except IntegrityError:
                if attempt == APPEND_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _append_audit_record(
        self,
        build: Callable[[int, str], AuditRecordRow],
        sign_head: Callable[[int, str], str],
    ) -> AuditRecordRow:
        h = schema.audit_head.c
        with self._audit_write() as conn:
            last_sequence, last_hash = conn.execute(select(h.sequence, h.hash).where(h.id == HEAD_ID)).one()
            record = build(int(last_sequence) + 1, last_hash)
            conn.execute(
                insert(schema.audit_log).values(
                    sequence=record.sequence,
                    time=_utc(record.time),
                    actor=record.actor,
                    tenant_id=record.tenant_id,
                    peer=record.peer,
                    rpc=record.rpc,
                    resource=record.resource,
                    action=record.action,
                    outcome=record.outcome,
                    status_code=record.status_code,
                    trace_id=record.trace_id,
                    details=record.details_json,
                    previous_hash=record.previous_hash,
                    hash=record.hash,
                )
            )
            conn.execute(
                update(schema.audit_head)
                .where(h.id == HEAD_ID)
                .values(
                    sequence=record.sequence,
                    hash=record.hash,
                    signature=sign_head(record.sequence, record.hash),
                )
            )
        return record

    def audit_chain_state(self) -> AuditChainState:
        """The chain head and the highest stored sequence (one statement: one snapshot), and the
        checkpoints, oldest first."""
        h = schema.audit_head.c
        highest = select(func.coalesce(func.max(schema.audit_log.c.sequence), 0))
        with self.engine.connect() as conn:
            row = conn.execute(
                select(h.sequence, h.hash, h.signature, highest.scalar_subquery().label("highest")).where(
                    h.id == HEAD_ID
                )
            ).one_or_none()
            if row is None:
                head, max_sequence = None, int(conn.execute(highest).scalar_one())
            else:
                head = AuditHead(sequence=int(row.sequence), hash=row.hash, signature=row.signature)
                max_sequence = int(row.highest)
            c = schema.audit_checkpoints.c
            checkpoints = [
                _checkpoint(r)
                for r in conn.execute(select(schema.audit_checkpoints).order_by(c.through_sequence))
            ]
        return AuditChainState(head=head, checkpoints=checkpoints, max_sequence=max_sequence)

    def audit_records_after(
        self,
        after_sequence: int,
        limit: int,
        through: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        tenant_id: str | None = None,
    ) -> list[AuditRecordRow]:
        """Up to ``limit`` records with sequence > ``after_sequence`` (and <= ``through``), time in
        [``start``, ``end``), of ``tenant_id``; None: no bound. Oldest first."""
        a = schema.audit_log.c
        query = select(schema.audit_log).where(a.sequence > after_sequence)
        if through is not None:
            query = query.where(a.sequence <= through)
        if start is not None:
            query = query.where(a.time >= _utc(start))
        if end is not None:
            query = query.where(a.time < _utc(end))
        if tenant_id is not None:
            query = query.where(a.tenant_id == tenant_id)
        with self.engine.connect() as conn:
            return [_record(row) for row in conn.execute(query.order_by(a.sequence).limit(limit))]

    def audit_retention_bound(self, cutoff: datetime) -> int:
        """The highest sequence S such that every stored record up to S is older than ``cutoff`` (the
        record before the first one that is not; times need not rise with the sequence); 0 when none."""
        a = schema.audit_log.c
        with self.engine.connect() as conn:
            first_recent = conn.execute(select(func.min(a.sequence)).where(a.time >= _utc(cutoff))).scalar()
            if first_recent is not None:
                return int(first_recent) - 1
            return int(conn.execute(select(func.coalesce(func.max(a.sequence), 0))).scalar_one())

    def checkpoint_audit_records(self, checkpoint: AuditCheckpoint, previous_through: int) -> int:
        """Stores ``checkpoint`` and deletes the records it summarises, in one transaction, if the
        newest checkpoint still ends at ``previous_through`` (else another gateway was first: 0).
        The number of records deleted."""
        c = schema.audit_checkpoints.c
        with self._audit_write() as conn:
            newest = conn.execute(select(func.coalesce(func.max(c.through_sequence), 0))).scalar_one()
            if int(newest) != previous_through:
                return 0
            conn.execute(
                insert(schema.audit_checkpoints).values(
                    through_sequence=checkpoint.through_sequence,
                    through_hash=checkpoint.through_hash,
                    previous_hash=checkpoint.previous_hash,
                    record_count=checkpoint.record_count,
                    first_time=None if checkpoint.first_time is None else _utc(checkpoint.first_time),
                    last_time=None if checkpoint.last_time is None else _utc(checkpoint.last_time),
                    summary=checkpoint.summary_json,
                    create_time=_utc(checkpoint.create_time),
                    signature=checkpoint.signature,
                )
            )
            deleted = int(
                conn.execute(
                    delete(schema.audit_log).where(schema.audit_log.c.sequence <= checkpoint.through_sequence)
                ).rowcount
            )
            if deleted != checkpoint.record_count:
                raise StoreInconsistent(
                    f"audit retention: {deleted} records stored up to {checkpoint.through_sequence}, "
                    f"the checkpoint summarises {checkpoint.record_count}; nothing deleted"
                )
            return deleted
