"""One user's data across the store (the data subject rights): erase it and export it, within the
current tenant; and the one read that spans every tenant, the retention purge's list of old analyses.

Erasure deletes the user's conversations with every row derived from them one by one, and leaves the
aggregates the analysis computed from many users (cluster sizes, distributions, names, revision
counts). Those stay as they were, flagged stale by a warning on the analysis
(``ERASED_USER_CONVERSATIONS``): names and keywords never hold a word of fewer than
``min_distinct_users`` users (the clustering service masks rarer words), so they carry nothing of one
user; re-running the analysis recomputes them.

- ``conversations``, ``facet_values``, ``assignments``, ``added_assignments``: the user's rows deleted
  (ordinals become holes: readers page by ordinal and skip them);
- ``embeddings``: the vectors are stored per batch as one blob; the user's rows in it are overwritten
  with zeros (the batch keeps its length, so ordinal ranges still cut cleanly, and a zero row is never
  read as a member: its assignment is gone);
- ``assignment_centroids``: deleted (they averaged the user's vectors); AssignConversations computes
  them again from the members left;
- ``checkpoints``: one row per erasure carrying the warning tally (stage ``store``, a negative batch
  index, no items, so progress sums are unchanged);
- ``analyses``: a PENDING or RUNNING analysis with the user's conversations is CANCELLED (its pipeline
  would otherwise read holes).

On SQLite the erasing transaction runs with ``secure_delete`` (freed content is overwritten with zeros)
and the write-ahead log is checkpointed and truncated afterwards, so no copy of the rows stays in the
database's files. PostgreSQL keeps dead tuples until VACUUM reclaims them (autovacuum does, later).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, delete, func, insert, select, update

from .. import schema
from ..analysis_warnings import ERASED_USER_CONVERSATIONS
from ..models import AnalysisState, Stage
from .base import ACTIVE_STATES, StoreBase, aware, utcnow
from .codecs import decode_messages, dumps, iter_decoded

# The error of an analysis cancelled because it held the data of a user being erased.
ERASED_CANCEL_REASON = "cancelled: it held conversations of a user whose data was erased"
# Ordinals per `IN (...)` list (SQLite allows 999 parameters per statement by default on old builds).
IN_CHUNK = 900
# The tables whose rows of an erased user are deleted by ordinal, children first.
ORDINAL_TABLES = (
    schema.facet_values,
    schema.assignments,
    schema.added_assignments,
    schema.conversations,
)


@dataclass(frozen=True)
class ErasureCounts:
    """What an erasure removed: rows deleted per table (``embeddings``: vectors overwritten with zeros),
    the analyses whose results are now stale and those it cancelled (a subset of the stale ones)."""

    deleted_rows: dict[str, int]
    stale_analysis_ids: list[str]
    cancelled_analysis_ids: list[str]


@dataclass(frozen=True)
class ExpiredAnalysis:
    """An analysis created before the retention cut-off, in any tenant."""

    tenant_id: str
    analysis_id: str
    state: AnalysisState
    create_time: datetime


def _chunks(items: Sequence[int], size: int = IN_CHUNK) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class UserRepository(StoreBase):
    """Erase and export one user's data in the current tenant; list expired analyses of all tenants."""

    # -- reading -----------------------------------------------------------------------------------

    def user_analyses(self, user_id: str) -> dict[str, AnalysisState]:
        """The analyses (of the current tenant) holding conversations of ``user_id``, with their state."""
        with self.engine.connect() as conn:
            return self._analyses_of(conn, user_id)

    def export_user(self, user_id: str) -> dict[str, Any]:
        """Everything stored of ``user_id`` in the current tenant, as JSON-able data: per analysis, the
        user's conversations (id, messages, metadata), their facet values and where the results put
        them (cluster id, name and ancestors, map point; for conversations added by AssignConversations
        the revision that added them). Nothing of any other user: cluster names are aggregates."""
        analyses = []
        with self.engine.connect() as conn:
            for analysis_id, state in self._analyses_of(conn, user_id).items():
                analyses.append(self._export_analysis(conn, analysis_id, state, user_id))
        return {
            "user_id": user_id,
            "tenant_id": self.tenant_id,
            "export_time": utcnow().isoformat(),
            "analyses": analyses,
        }

    def _export_analysis(
        self, conn: Connection, analysis_id: str, state: AnalysisState, user_id: str
    ) -> dict[str, Any]:
        a = schema.analyses.c
        c = schema.conversations.c
        created = conn.execute(select(a.create_time).where(self._where_analysis(analysis_id))).scalar_one()
        rows = list(
            conn.execute(
                select(c.ordinal, c.conversation_id, c.messages, c.metadata)
                .where(c.analysis_id == analysis_id, c.tenant_id == self.tenant_id, c.user_id == user_id)
                .order_by(c.ordinal)
            )
        )
        ordinals = [int(row[0]) for row in rows]
        facets = self._by_ordinal(conn, schema.facet_values, analysis_id, ordinals, "values_json")
        own = self._by_ordinal(
            conn, schema.assignments, analysis_id, ordinals, "cluster_id", "withheld", "x", "y"
        )
        added = self._by_ordinal(
            conn,
            schema.added_assignments,
            analysis_id,
            ordinals,
            "cluster_id",
            "revision",
            "released_revision",
        )
        tree = self._cluster_tree(conn, analysis_id)
        conversations = []
        for ordinal, conversation_id, messages, metadata in rows:
            item: dict[str, Any] = {
                "conversation_id": conversation_id,
                "messages": [{"role": m.role, "content": m.content} for m in decode_messages(messages)],
                "metadata": json.loads(metadata) if metadata else {},
                "facets": [
                    {"facet": facet, "text": text, "number": number}
                    for facet, text, number in iter_decoded(facets[ordinal][0])
                ]
                if ordinal in facets
                else [],
            }
            if ordinal in own:
                cluster_id, withheld, x, y = own[ordinal]
                item["result"] = {
                    "clusters": _lineage(tree, cluster_id),
                    "withheld": bool(withheld),
                    "point": [x, y] if x is not None and y is not None else None,
                }
            elif ordinal in added:
                cluster_id, revision, released = added[ordinal]
                item["result"] = {
                    "added_in_revision": int(revision),
                    "clusters": _lineage(tree, cluster_id),
                    "withheld": bool(cluster_id) and released is None,
                    "unassigned": not cluster_id,
                }
            conversations.append(item)
        return {
            "analysis_id": analysis_id,
            "state": state.value,
            "create_time": aware(created).isoformat(),
            "conversations": conversations,
        }

    def _by_ordinal(
        self, conn: Connection, table: Table, analysis_id: str, ordinals: Sequence[int], *columns: str
    ) -> dict[int, tuple[Any, ...]]:
        found: dict[int, tuple[Any, ...]] = {}
        for chunk in _chunks(ordinals):
            query = select(table.c.ordinal, *(table.c[name] for name in columns)).where(
                table.c.analysis_id == analysis_id,
                table.c.tenant_id == self.tenant_id,
                table.c.ordinal.in_(chunk),
            )
            for row in conn.execute(query):
                found[int(row[0])] = tuple(row[1:])
        return found

    def _cluster_tree(self, conn: Connection, analysis_id: str) -> dict[str, tuple[str, int, str]]:
        """cluster id -> (name, level, parent id) of the analysis's tree."""
        k = schema.clusters.c
        query = select(k.cluster_id, k.name, k.level, k.parent_id).where(
            k.analysis_id == analysis_id, k.tenant_id == self.tenant_id
        )
        return {cid: (name, int(level), parent) for cid, name, level, parent in conn.execute(query)}

    # -- erasing -----------------------------------------------------------------------------------

    def erase_user(self, user_id: str) -> ErasureCounts:
        """Deletes every row of ``user_id``'s conversations in the current tenant, in one transaction.

        Analyses that held them get the ``ERASED_USER_CONVERSATIONS`` warning (their results are stale);
        a PENDING or RUNNING one is CANCELLED. The caller stops such a pipeline first
        (``security/users.py``): this store cannot stop a task that is writing."""
        deleted = {table.name: 0 for table in ORDINAL_TABLES}
        deleted[schema.embeddings.name] = 0
        deleted[schema.assignment_centroids.name] = 0
        stale: list[str] = []
        cancelled: list[str] = []
        sqlite = self.dialect == "sqlite"
        with self.engine.connect() as conn:
            if sqlite:
                previous = _pragma(conn, "secure_delete")
                _pragma(conn, "secure_delete=ON")
            try:
                with conn.begin():
                    for analysis_id, state in self._analyses_of(conn, user_id).items():
                        ordinals = self._ordinals_of(conn, analysis_id, user_id)
                        if not ordinals:
                            continue
                        if state.value in ACTIVE_STATES and self._cancel(conn, analysis_id):
                            cancelled.append(analysis_id)
                        self._erase_rows(conn, analysis_id, ordinals, deleted)
                        self._mark_stale(conn, analysis_id, len(ordinals))
                        stale.append(analysis_id)
            finally:
                if sqlite:
                    _pragma(conn, f"secure_delete={int(previous or 0)}")
            if sqlite and stale:
                # Copies the erased pages into the database file and empties the log of older frames.
                _pragma(conn, "wal_checkpoint(TRUNCATE)")
        return ErasureCounts(deleted, stale, cancelled)

    def _analyses_of(self, conn: Connection, user_id: str) -> dict[str, AnalysisState]:
        c = schema.conversations.c
        a = schema.analyses.c
        query = (
            select(a.id, a.state)
            .where(
                a.tenant_id == self.tenant_id,
                a.id.in_(select(c.analysis_id).where(c.tenant_id == self.tenant_id, c.user_id == user_id)),
            )
            .order_by(a.seq)
        )
        return {analysis_id: AnalysisState(state) for analysis_id, state in conn.execute(query)}

    def _ordinals_of(self, conn: Connection, analysis_id: str, user_id: str) -> list[int]:
        c = schema.conversations.c
        query = (
            select(c.ordinal)
            .where(c.analysis_id == analysis_id, c.tenant_id == self.tenant_id, c.user_id == user_id)
            .order_by(c.ordinal)
        )
        return [int(o) for (o,) in conn.execute(query)]

    def _cancel(self, conn: Connection, analysis_id: str) -> bool:
        a = schema.analyses.c
        result = conn.execute(
            update(schema.analyses)
            .where(self._where_analysis(analysis_id), a.state.in_(ACTIVE_STATES))
            .values(
                state=AnalysisState.CANCELLED.value,
                error=ERASED_CANCEL_REASON,
                error_code="",
                update_time=utcnow(),
            )
        )
        return bool(result.rowcount)

    def _erase_rows(
        self, conn: Connection, analysis_id: str, ordinals: Sequence[int], deleted: dict[str, int]
    ) -> None:
        for table in ORDINAL_TABLES:
            for chunk in _chunks(ordinals):
                result = conn.execute(
                    delete(table).where(
                        table.c.analysis_id == analysis_id,
                        table.c.tenant_id == self.tenant_id,
                        table.c.ordinal.in_(chunk),
                    )
                )
                deleted[table.name] += int(result.rowcount or 0)
        deleted[schema.embeddings.name] += self._zero_vectors(conn, analysis_id, ordinals)
        g = schema.assignment_centroids.c
        result = conn.execute(
            delete(schema.assignment_centroids).where(
                g.analysis_id == analysis_id, g.tenant_id == self.tenant_id
            )
        )
        deleted[schema.assignment_centroids.name] += int(result.rowcount or 0)

    def _zero_vectors(self, conn: Connection, analysis_id: str, ordinals: Sequence[int]) -> int:
        """Overwrites the rows of ``ordinals`` with zeros in the embedding batches that hold them; returns
        how many rows it overwrote (added conversations have no stored vectors)."""
        e = schema.embeddings.c
        query = select(e.batch_index, e.start_ordinal, e.count, e.dim, e.data).where(
            e.analysis_id == analysis_id,
            e.tenant_id == self.tenant_id,
            e.start_ordinal <= ordinals[-1],
            e.start_ordinal + e.count > ordinals[0],
        )
        zeroed = 0
        for batch_index, start, count, dim, data in list(conn.execute(query)):
            inside = [o - start for o in ordinals if start <= o < start + count]
            if not inside:
                continue
            row_bytes = int(dim) * 4
            blob = bytearray(data)
            for row in inside:
                blob[row * row_bytes : (row + 1) * row_bytes] = bytes(row_bytes)
            conn.execute(
                update(schema.embeddings)
                .where(
                    e.analysis_id == analysis_id, e.tenant_id == self.tenant_id, e.batch_index == batch_index
                )
                .values(data=bytes(blob))
            )
            zeroed += len(inside)
        return zeroed

    def _mark_stale(self, conn: Connection, analysis_id: str, erased: int) -> None:
        """One checkpoint row that carries the warning: stage ``store``, the next free negative batch
        index (the pipeline's own are >= 0), no items."""
        c = schema.checkpoints.c
        lowest = conn.execute(
            select(func.min(c.batch_index)).where(
                c.analysis_id == analysis_id, c.tenant_id == self.tenant_id, c.stage == Stage.STORE.value
            )
        ).scalar()
        conn.execute(
            insert(schema.checkpoints).values(
                analysis_id=analysis_id,
                stage=Stage.STORE.value,
                batch_index=min(int(lowest or 0), 0) - 1,
                tenant_id=self.tenant_id,
                item_count=0,
                warnings=dumps({ERASED_USER_CONVERSATIONS: erased}),
                create_time=utcnow(),
            )
        )
        conn.execute(
            update(schema.analyses).where(self._where_analysis(analysis_id)).values(update_time=utcnow())
        )

    # -- retention ---------------------------------------------------------------------------------

    def expired_analyses(self, created_before: datetime) -> list[ExpiredAnalysis]:
        """Analyses of EVERY tenant created before ``created_before``, oldest first (uploads still
        streaming excluded). Global on purpose: the retention purge is the operator's, not a tenant's."""
        a = schema.analyses.c
        query = (
            select(a.tenant_id, a.id, a.state, a.create_time)
            .where(a.create_time < created_before, a.upload_complete.is_(True))
            .order_by(a.seq)
        )
        with self.engine.connect() as conn:
            return [
                ExpiredAnalysis(tenant, analysis_id, AnalysisState(state), aware(created))
                for tenant, analysis_id, state, created in conn.execute(query)
            ]


def _pragma(conn: Connection, statement: str) -> Any:
    """Runs ``PRAGMA <statement>`` outside any transaction (SQLite starts none for a pragma; the commit
    ends SQLAlchemy's own autobegun one) and returns its first value."""
    value = conn.exec_driver_sql(f"PRAGMA {statement}").scalar()
    conn.commit()
    return value


def _lineage(tree: dict[str, tuple[str, int, str]], cluster_id: str) -> list[dict[str, Any]]:
    """The cluster ``cluster_id`` and its ancestors, base first: [{id, name, level}]; [] for none."""
    lineage: list[dict[str, Any]] = []
    seen: set[str] = set()
    while cluster_id and cluster_id in tree and cluster_id not in seen:
        seen.add(cluster_id)
        name, level, parent = tree[cluster_id]
        lineage.append({"id": cluster_id, "name": name, "level": level})
        cluster_id = parent
    return lineage
