"""What every part of the store shares: one engine per tenant view, the store's errors, row helpers."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, and_, insert

from briefxai_common.resilience import Retrier

from .. import schema
from ..models import DEFAULT_TENANT, AnalysisState
from ..security.principal import current_tenant
from .engine import create_store_engine, migrate

# Rows per executemany of a bulk insert.
INSERT_CHUNK = 2000

# States of an analysis that still has to run (to resume at startup, to claim).
ACTIVE_STATES = (AnalysisState.PENDING.value, AnalysisState.RUNNING.value)


class DuplicateRequestId(Exception):
    """An analysis with this request_id exists already."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        super().__init__(f"an analysis with request_id {request_id!r} exists")


class StoreInconsistent(RuntimeError):
    """Stored data does not add up (for example an embedding batch is missing)."""


class LeaseLost(Exception):
    """Another gateway holds the lease of the analysis (it took the run over): nothing was written."""

    def __init__(self, analysis_id: str) -> None:
        self.analysis_id = analysis_id
        super().__init__(f"another gateway holds the lease of analysis {analysis_id}; nothing was written")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_owner_id() -> str:
    """host:pid:random: names one gateway process (one store object) as the holder of leases."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def aware(value: datetime) -> datetime:
    """``value`` with UTC as its zone where it has none (SQLite returns naive datetimes)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def insert_chunked(conn: Connection, table: Table, rows: Iterable[dict[str, Any]]) -> None:
    """Inserts ``rows`` with executemany, ``INSERT_CHUNK`` rows at a time."""
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= INSERT_CHUNK:
            conn.execute(insert(table), chunk)
            chunk = []
    if chunk:
        conn.execute(insert(table), chunk)


def ordinal_range(
    table: Table, tenant_id: str, analysis_id: str, start: int = 0, end: int | None = None
) -> list[ColumnElement[bool]]:
    """WHERE terms for the rows of one analysis with ordinals in [start, end) (no ``end``: to the last)."""
    terms = [table.c.analysis_id == analysis_id, table.c.tenant_id == tenant_id]
    if start:
        terms.append(table.c.ordinal >= start)
    if end is not None:
        terms.append(table.c.ordinal < end)
    return terms


class StoreBase:
    """One database, seen by the tenant of the current call: the engine the per-area repositories share.

    ``tenant_id`` is the tenant the current call or pipeline is scoped to (``security/principal.py``),
    else ``operator_tenant`` (the gateway's ``tenant_id`` setting): every read filters on it and every
    row written carries it. ``owner`` names this store's holder of analysis leases (``leases.py``): one
    per gateway process."""

    def __init__(self, url: str, tenant_id: str = DEFAULT_TENANT, owner: str | None = None) -> None:
        self.url = url
        self.operator_tenant = tenant_id
        self.owner = owner or new_owner_id()
        self.engine = create_store_engine(url)
        # Retries transient database errors of each public call (``metrics.timed_store``); None: none.
        self.retrier: Retrier | None = None

    @property
    def tenant_id(self) -> str:
        return current_tenant() or self.operator_tenant

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def _where_analysis(self, analysis_id: str) -> Any:
        a = schema.analyses.c
        return and_(a.id == analysis_id, a.tenant_id == self.tenant_id)
