"""Analysis leases: which gateway runs an analysis, until when, and how often one was claimed.

Several gateways may share one database (PostgreSQL). Each analysis has one row in
``analysis_leases``, written with the analysis. A gateway runs an analysis only after it has *claimed*
it: one conditional ``UPDATE`` that takes the lease where nobody holds it, this gateway holds it, or the
holder let it expire. While the analysis runs, the gateway renews the lease (a heartbeat); when it
stops, it releases it. A crashed gateway renews nothing, so its analyses become claimable once their
leases expire, and another gateway resumes them from their checkpoints; a live gateway's lease is never
taken.

Why one ``UPDATE`` is enough: two claims of one row serialize on its row lock. On PostgreSQL (READ
COMMITTED) the second claim waits for the first to commit and then re-checks its ``WHERE`` against the
row the first one wrote, which now names a live owner, so it updates nothing; SQLite has one writer at
a time. Exactly one claim gets ``rowcount == 1``.

Writes of a run are fenced: the batch and result writes first update their analysis's lease row where
this gateway holds it (or nobody does) and write nothing otherwise (:func:`hold_lease`). The row lock
orders them with claims, so a gateway that stalled past its lease cannot write into a run another
gateway has taken over.

Times come from the database's clock on PostgreSQL (one clock for every gateway) and from this host's
on SQLite (whose gateways share one host).

The table is defined here, on the schema's ``MetaData``, with the store that alone uses it
(migration 0005 creates it).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

import psutil
from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Table,
    exists,
    func,
    or_,
    select,
    update,
)

from .. import schema
from ..models import AnalysisState
from .base import ACTIVE_STATES, StoreBase, aware, utcnow

analysis_leases = Table(
    "analysis_leases",
    schema.metadata,
    Column("analysis_id", String(64), ForeignKey("analyses.id", ondelete="CASCADE"), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    # The gateway holding the lease (``Store.owner``: host:pid:random); NULL when nobody does.
    Column("owner", String(128), nullable=True),
    # When the lease runs out unless renewed; NULL when nobody holds it.
    Column("expires", DateTime(timezone=True), nullable=True),
    # Claims so far: 1 for an analysis run once, one more per resume or takeover.
    Column("attempts", Integer, nullable=False, default=0, server_default="0"),
)


def db_clock(conn: Connection) -> datetime:
    """Now, by the database's clock on PostgreSQL, by this host's elsewhere (SQLite: one host).

    On PostgreSQL it is the start of the current transaction (``now()``); callers keep those short."""
    if conn.dialect.name == "postgresql":
        value: datetime = conn.execute(select(func.now())).scalar_one()
        return value
    return utcnow()


def lease_row(tenant_id: str, analysis_id: str) -> dict[str, object]:
    """The lease row of a new analysis: nobody holds it."""
    return {"analysis_id": analysis_id, "tenant_id": tenant_id, "owner": None, "expires": None, "attempts": 0}


def local_owner_is_dead(owner: str, me: str) -> bool:
    """Whether ``owner`` (host:pid:random) was a gateway process of ``me``'s host that has exited: its pid
    is gone, or is ``me``'s own pid (a container restarted in place gets the same host name and pid)."""
    host, _, rest = owner.partition(":")
    pid_text, _, _ = rest.partition(":")
    my_host, _, my_rest = me.partition(":")
    if host != my_host or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    return pid == int(my_rest.partition(":")[0]) or not psutil.pid_exists(pid)


def hold_lease(conn: Connection, tenant_id: str, analysis_id: str, owner: str) -> bool:
    """Locks the analysis's lease row for the rest of the transaction if ``owner`` holds the lease or
    nobody does; False (nothing locked) when another gateway holds it or the analysis is gone.

    The first statement of a fenced write: it orders the write with claims of the same row."""
    lease = analysis_leases.c
    result = conn.execute(
        update(analysis_leases)
        .where(
            lease.analysis_id == analysis_id,
            lease.tenant_id == tenant_id,
            or_(lease.owner.is_(None), lease.owner == owner),
        )
        .values(owner=lease.owner)
    )
    return bool(result.rowcount)


def _runnable() -> ColumnElement[bool]:
    """WHERE term: the lease row's analysis is PENDING or RUNNING and fully uploaded."""
    a = schema.analyses.c
    return exists(
        select(a.id).where(
            a.id == analysis_leases.c.analysis_id,
            a.state.in_(ACTIVE_STATES),
            a.upload_complete.is_(True),
        )
    )


class LeaseRepository(StoreBase):
    """Claims, renewals and releases of analysis leases by this store's ``owner``.

    Leases are the gateways' business, not a tenant's: these methods see the analyses of every tenant
    (analysis ids are unique across tenants), so one gateway runs every tenant's analyses."""

    def claim_analysis(self, analysis_id: str, lease_seconds: float) -> int | None:
        """Takes the analysis's lease for ``lease_seconds`` and marks it RUNNING, atomically.

        Succeeds where the analysis is PENDING or RUNNING and its lease is free, expired or already this
        store's; returns the claim's number (``attempts``), or None when another gateway holds a live
        lease or the analysis is finished, uploading or gone."""
        lease = analysis_leases.c
        a = schema.analyses.c
        with self.engine.begin() as conn:
            now = db_clock(conn)
            claimed = conn.execute(
                update(analysis_leases)
                .where(
                    lease.analysis_id == analysis_id,
                    or_(lease.owner.is_(None), lease.owner == self.owner, lease.expires < now),
                    _runnable(),
                )
                .values(
                    owner=self.owner,
                    expires=now + timedelta(seconds=lease_seconds),
                    attempts=lease.attempts + 1,
                )
            )
            if not claimed.rowcount:
                return None
            conn.execute(
                update(schema.analyses)
                .where(a.id == analysis_id, a.state.in_(ACTIVE_STATES))
                .values(state=AnalysisState.RUNNING.value, update_time=now)
            )
            attempts: int = conn.execute(
                select(lease.attempts).where(lease.analysis_id == analysis_id)
            ).scalar_one()
        return attempts

    def renew_leases(self, analysis_ids: Collection[str], lease_seconds: float) -> set[str]:
        """Extends this store's leases of ``analysis_ids`` by ``lease_seconds`` from now; returns the ids
        renewed. One missing was taken over by another gateway, or is finished or deleted: stop it."""
        if not analysis_ids:
            return set()
        lease = analysis_leases.c
        with self.engine.begin() as conn:
            now = db_clock(conn)
            rows = conn.execute(
                update(analysis_leases)
                .where(
                    lease.analysis_id.in_(list(analysis_ids)),
                    lease.owner == self.owner,
                    _runnable(),
                )
                .values(expires=now + timedelta(seconds=lease_seconds))
                .returning(lease.analysis_id)
            )
            return {row[0] for row in rows}

    def release_lease(self, analysis_id: str) -> bool:
        """Gives up this store's lease of the analysis (another gateway may claim it at once); False
        when this store did not hold it."""
        lease = analysis_leases.c
        with self.engine.begin() as conn:
            result = conn.execute(
                update(analysis_leases)
                .where(
                    lease.analysis_id == analysis_id,
                    lease.owner == self.owner,
                )
                .values(owner=None, expires=None)
            )
            return bool(result.rowcount)

    def release_dead_local_leases(self) -> int:
        """Frees the leases held by gateway processes of this host that are no longer alive; returns how
        many. A gateway restarted after a crash (``briefxai up`` restarts it) so resumes its analyses at
        once instead of after ``analysis_lease_seconds``. Only a dead process is certain: an owner of
        this host whose pid is alive (or reused) keeps its lease until it expires."""
        lease = analysis_leases.c
        with self.engine.begin() as conn:
            owners = conn.execute(select(lease.owner).where(lease.owner.is_not(None)).distinct()).scalars()
            dead = [
                owner for owner in owners if owner != self.owner and local_owner_is_dead(owner, self.owner)
            ]
            if not dead:
                return 0
            result = conn.execute(
                update(analysis_leases).where(lease.owner.in_(dead)).values(owner=None, expires=None)
            )
            return int(result.rowcount)

    def claimable_analysis_ids(self, limit: int | None = None) -> list[str]:
        """PENDING or RUNNING analyses (fully uploaded) whose lease is free or expired, oldest first.

        A hint only: :meth:`claim_analysis` decides."""
        lease = analysis_leases.c
        a = schema.analyses.c
        with self.engine.connect() as conn:
            now = db_clock(conn)
            query = (
                select(a.id)
                .select_from(schema.analyses.join(analysis_leases, lease.analysis_id == a.id))
                .where(
                    a.state.in_(ACTIVE_STATES),
                    a.upload_complete.is_(True),
                    or_(lease.owner.is_(None), lease.expires < now),
                )
                .order_by(a.seq)
            )
            if limit is not None:
                query = query.limit(limit)
            return [row[0] for row in conn.execute(query)]

    def lease_of(self, analysis_id: str) -> tuple[str | None, datetime | None, int] | None:
        """(owner, expires, attempts) of the analysis's lease; None when there is no such analysis."""
        lease = analysis_leases.c
        with self.engine.connect() as conn:
            row = conn.execute(
                select(lease.owner, lease.expires, lease.attempts).where(lease.analysis_id == analysis_id)
            ).first()
        if row is None:
            return None
        return row[0], None if row[1] is None else aware(row[1]), int(row[2])
