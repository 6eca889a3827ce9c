"""Revisions of the results (AssignConversations): the added conversations with their nearest base
cluster, every cluster's counts and distributions per revision, and the base clusters' centroids.

A revision is written in one transaction, and only where the analysis's ``results_revision`` is still
the one it was computed from (:class:`RevisionConflict` otherwise): two replicas adding at once never
both write revision n + 1, and the loser computes again from the winner's revision.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, Table, and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from .. import schema
from ..centroids import Centroids
from ..models import (
    AnalysisState,
    ClusterWithFacets,
    Conversation,
    ConversationResult,
    FacetValue,
)
from ..revisions import (
    AssignOutcome,
    ConversationAssignment,
    Member,
    NewRevision,
    RevisionState,
    RevisionSummary,
    base_state,
    user_key,
)
from .analyses import insert_conversations
from .base import DuplicateRequestId, insert_chunked, utcnow
from .checkpoints import facet_rows, read_facets
from .codecs import decode_distributions, decode_facets, dumps, encode_distributions
from .results import ResultRepository

# Ordinals per `IN (...)` list.
IN_CHUNK = 900


class RevisionConflict(Exception):
    """The analysis is no longer at the revision a new one was computed from (or no longer SUCCEEDED)."""


def _chunks(items: Sequence[int], size: int = IN_CHUNK) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class RevisionRepository(ResultRepository):
    """Revisions after the pipeline's own (revision 0, which ``ResultRepository`` reads)."""

    # -- reading -----------------------------------------------------------------------------------

    def latest_revision(self, analysis_id: str) -> int | None:
        """The analysis's newest revision; None when there is no such analysis."""
        a = schema.analyses.c
        with self.engine.connect() as conn:
            value = conn.execute(select(a.results_revision).where(self._where_analysis(analysis_id))).scalar()
        return None if value is None else int(value)

    def revision_summary(self, analysis_id: str, revision: int) -> RevisionSummary | None:
        """The counts of ``revision``; None when it does not exist. Revision 0 reads the analysis."""
        if revision == 0:
            analysis = self._own_counts(analysis_id)
            if analysis is None:
                return None
            total, withheld = analysis
            return RevisionSummary(revision=0, total=total, withheld=withheld, unassigned=0)
        r = schema.revisions.c
        query = select(r.conversation_count, r.withheld_count, r.unassigned_count, r.max_distance).where(
            r.analysis_id == analysis_id, r.tenant_id == self.tenant_id, r.revision == revision
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return RevisionSummary(revision, int(row[0]), int(row[1]), int(row[2]), float(row[3]))

    def _own_counts(self, analysis_id: str) -> tuple[int, int] | None:
        """(conversations, withheld) of the analysis's own results."""
        a = schema.analyses.c
        with self.engine.connect() as conn:
            row = conn.execute(
                select(a.conversation_count, a.result_meta).where(self._where_analysis(analysis_id))
            ).first()
        if row is None:
            return None
        meta = json.loads(row[1]) if row[1] else {}
        return int(row[0]), int(meta.get("withheld_count", 0))

    def find_revision(self, analysis_id: str, request_id: str) -> int | None:
        """The revision made by the call with ``request_id``, if any."""
        r = schema.revisions.c
        query = select(r.revision).where(
            r.analysis_id == analysis_id, r.tenant_id == self.tenant_id, r.request_id == request_id
        )
        with self.engine.connect() as conn:
            value = conn.execute(query).scalar()
        return None if value is None else int(value)

    def assign_outcome(self, analysis_id: str, revision: int) -> AssignOutcome:
        """The answer of the call that made ``revision`` (> 0), as it was given."""
        r = schema.revisions.c
        s = schema.added_assignments.c
        c = schema.conversations.c
        query = self._added(
            analysis_id, c.conversation_id, s.cluster_id, s.distance, s.released_revision
        ).where(s.revision == revision)
        with self.engine.connect() as conn:
            head = conn.execute(
                select(r.max_distance, r.released_count).where(
                    r.analysis_id == analysis_id, r.tenant_id == self.tenant_id, r.revision == revision
                )
            ).first()
            if head is None:
                raise KeyError(f"analysis {analysis_id} has no revision {revision}")
            assignments = [
                ConversationAssignment(
                    conversation_id=cid,
                    cluster_id=cluster_id,
                    distance=float(distance),
                    unassigned=not cluster_id,
                    withheld=bool(cluster_id) and (released is None or int(released) > revision),
                )
                for cid, cluster_id, distance, released in conn.execute(query)
            ]
        return AssignOutcome(revision, assignments, float(head[0]), int(head[1]))

    def conversation_ids(self, analysis_id: str) -> set[str]:
        """Every conversation id of the analysis: its own and the added ones."""
        c = schema.conversations.c
        query = select(c.conversation_id).where(c.analysis_id == analysis_id, c.tenant_id == self.tenant_id)
        with self.engine.connect() as conn:
            return {cid for (cid,) in conn.execution_options(yield_per=5000).execute(query)}

    def load_clusters_at(self, analysis_id: str, revision: int) -> list[ClusterWithFacets]:
        """The tree as ``revision`` reports it: names and structure of revision 0, counts and
        distributions of ``revision``."""
        clusters = self.load_clusters(analysis_id)
        if revision == 0:
            return clusters
        k = schema.revision_clusters.c
        query = select(k.cluster_id, k.size, k.distinct_users, k.facets).where(
            k.analysis_id == analysis_id, k.tenant_id == self.tenant_id, k.revision == revision
        )
        with self.engine.connect() as conn:
            rows = {cid: (int(size), int(users), facets) for cid, size, users, facets in conn.execute(query)}
        result = []
        for item in clusters:
            node = item.cluster
            found = rows.get(node.id)
            if found is None:
                result.append(item)
                continue
            size, users, facets = found
            grown = replace(node, size=size, distinct_users=users)
            result.append(ClusterWithFacets(grown, decode_distributions(facets)))
        return result

    def load_revision_state(self, analysis_id: str, revision: int) -> RevisionState | None:
        """``revision`` as the next revision builds on it; None when it does not exist."""
        summary = self.revision_summary(analysis_id, revision)
        if summary is None:
            return None
        clusters = self.load_clusters_at(analysis_id, revision)
        a = schema.assignments.c
        s = schema.added_assignments.c
        c = schema.conversations.c
        own = (
            select(a.cluster_id, c.user_id, c.ordinal)
            .select_from(
                schema.assignments.join(schema.conversations, _same_conversation(schema.assignments))
            )
            .where(
                a.analysis_id == analysis_id,
                a.tenant_id == self.tenant_id,
                a.withheld.is_(False),
                a.cluster_id != "",
            )
        )
        added = self._added(analysis_id, s.cluster_id, c.user_id, c.ordinal).where(
            s.released_revision.is_not(None), s.released_revision <= revision
        )
        held = self._added(
            analysis_id, s.ordinal, c.conversation_id, c.user_id, s.cluster_id, s.distance, s.revision
        ).where(
            s.cluster_id != "",
            s.revision <= revision,
            (s.released_revision.is_(None)) | (s.released_revision > revision),
        )
        users: dict[str, set[str]] = {}
        with self.engine.connect() as conn:
            for query in (own, added):
                for cluster_id, user_id, ordinal in conn.execution_options(yield_per=5000).execute(query):
                    users.setdefault(cluster_id, set()).add(user_key(user_id, int(ordinal)))
            pending = [
                Member(int(o), cid, user_key(uid, int(o)), cluster_id, float(distance), [], int(rev))
                for o, cid, uid, cluster_id, distance, rev in conn.execute(held)
            ]
            values = self._facets_of(conn, analysis_id, [m.ordinal for m in pending])
        for member in pending:
            member.values = values.get(member.ordinal, [])
        return base_state(summary, clusters, users, pending)

    def _facets_of(
        self, conn: Connection, analysis_id: str, ordinals: Sequence[int]
    ) -> dict[int, list[FacetValue]]:
        f = schema.facet_values.c
        found: dict[int, list[FacetValue]] = {}
        for chunk in _chunks(ordinals):
            query = select(f.ordinal, f.values_json).where(
                f.analysis_id == analysis_id, f.tenant_id == self.tenant_id, f.ordinal.in_(chunk)
            )
            found.update((int(o), decode_facets(text)) for o, text in conn.execute(query))
        return found

    def load_added_results(
        self, analysis_id: str, revision: int, start: int, end: int
    ) -> list[ConversationResult]:
        """Added conversations of ``revision`` (it and the ones before) with ordinals in [start, end), as
        that revision reports them."""
        s = schema.added_assignments.c
        c = schema.conversations.c
        query = self._added(
            analysis_id,
            s.ordinal,
            c.conversation_id,
            s.revision,
            s.cluster_id,
            s.distance,
            s.released_revision,
        ).where(s.revision <= revision, s.ordinal >= start, s.ordinal < end)
        with self.engine.connect() as conn:
            rows = list(conn.execute(query))
            facets = read_facets(conn, self.tenant_id, analysis_id, start, end)
        result = []
        for ordinal, cid, added_in, cluster_id, distance, released in rows:
            reported = bool(cluster_id) and released is not None and int(released) <= revision
            result.append(
                ConversationResult(
                    conversation_id=cid,
                    facets=facets.get(int(ordinal), []),
                    cluster_id=cluster_id if reported else "",
                    withheld=bool(cluster_id) and not reported,
                    point=None,
                    revision=int(added_in),
                    distance=float(distance),
                    unassigned=not cluster_id,
                )
            )
        return result

    def _added(self, analysis_id: str, *columns: ColumnElement[Any]) -> Select[Any]:
        """``columns`` of the analysis's added conversations (added_assignments with their conversation
        rows), in ordinal order; callers add their conditions."""
        s = schema.added_assignments.c
        return (
            select(*columns)
            .select_from(schema.added_assignments.join(schema.conversations, _same_conversation()))
            .where(s.analysis_id == analysis_id, s.tenant_id == self.tenant_id)
            .order_by(s.ordinal)
        )

    # -- centroids ---------------------------------------------------------------------------------

    def embedding_model(self, analysis_id: str) -> str:
        """The model the analysis's vectors came from ("" when none is stored)."""
        e = schema.embeddings.c
        query = (
            select(e.model)
            .where(e.analysis_id == analysis_id, e.tenant_id == self.tenant_id)
            .order_by(e.batch_index)
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).scalar() or ""

    def member_clusters(self, analysis_id: str, start: int, end: int) -> list[str]:
        """The base cluster of each of the analysis's own ordinals in [start, end); "" when withheld."""
        a = schema.assignments.c
        query = select(a.ordinal, a.cluster_id, a.withheld).where(
            a.analysis_id == analysis_id, a.tenant_id == self.tenant_id, a.ordinal >= start, a.ordinal < end
        )
        found = ["" for _ in range(end - start)]
        with self.engine.connect() as conn:
            for ordinal, cluster_id, withheld in conn.execute(query):
                if not withheld and cluster_id:
                    found[int(ordinal) - start] = cluster_id
        return found

    def load_centroids(self, analysis_id: str) -> Centroids | None:
        g = schema.assignment_centroids.c
        query = select(g.cluster_ids, g.data, g.dim, g.members, g.distance_percentiles, g.model).where(
            g.analysis_id == analysis_id, g.tenant_id == self.tenant_id
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        ids, data, dim, members, percentiles, model = row
        return Centroids.from_bytes(
            json.loads(ids), bytes(data), int(dim), int(members), json.loads(percentiles), model
        )

    def save_centroids(self, analysis_id: str, centroids: Centroids) -> None:
        """Keeps the first centroids stored (another replica may have computed the same at once)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(schema.assignment_centroids).values(
                        analysis_id=analysis_id,
                        tenant_id=self.tenant_id,
                        model=centroids.model,
                        dim=centroids.dim,
                        cluster_ids=dumps(centroids.cluster_ids),
                        data=centroids.to_bytes(),
                        members=centroids.members,
                        distance_percentiles=dumps(centroids.distance_percentiles),
                        create_time=utcnow(),
                    )
                )
        except IntegrityError:
            if self.load_centroids(analysis_id) is None:
                raise

    # -- writing -----------------------------------------------------------------------------------

    def save_revision(
        self, analysis_id: str, based_on: int, new: NewRevision, conversations: Sequence[Conversation]
    ) -> None:
        """Writes ``new`` (computed from revision ``based_on``) with its ``conversations`` (in the order
        of ``new.members``), atomically. RevisionConflict when the analysis is no longer at ``based_on``;
        DuplicateRequestId when another call with the same request id wrote its revision first."""
        a = schema.analyses.c
        s = schema.added_assignments.c
        summary = new.summary
        start = new.members[0].ordinal if new.members else summary.total
        with self.engine.begin() as conn:
            moved = conn.execute(
                update(schema.analyses)
                .where(
                    self._where_analysis(analysis_id),
                    a.results_revision == based_on,
                    a.state == AnalysisState.SUCCEEDED.value,
                )
                .values(results_revision=new.revision, update_time=utcnow())
            )
            if not moved.rowcount:
                raise RevisionConflict(f"analysis {analysis_id} is no longer at revision {based_on}")
            try:
                conn.execute(
                    insert(schema.revisions).values(
                        analysis_id=analysis_id,
                        revision=new.revision,
                        tenant_id=self.tenant_id,
                        request_id=new.request_id or None,
                        create_time=utcnow(),
                        conversation_count=summary.total,
                        added_count=len(new.members),
                        withheld_count=summary.withheld,
                        unassigned_count=summary.unassigned,
                        released_count=len(new.released_earlier),
                        max_distance=summary.max_distance,
                    )
                )
            except IntegrityError as exc:
                raise DuplicateRequestId(new.request_id) from exc
            insert_conversations(conn, self.tenant_id, analysis_id, start, conversations)
            insert_chunked(
                conn,
                schema.facet_values,
                facet_rows(self.tenant_id, analysis_id, start, [m.values for m in new.members]),
            )
            insert_chunked(
                conn,
                schema.added_assignments,
                (
                    {
                        "analysis_id": analysis_id,
                        "ordinal": m.ordinal,
                        "tenant_id": self.tenant_id,
                        "revision": new.revision,
                        "cluster_id": m.cluster_id,
                        "distance": m.distance,
                        "released_revision": new.revision if m.ordinal in new.released else None,
                    }
                    for m in new.members
                ),
            )
            for chunk in _chunks(new.released_earlier):
                conn.execute(
                    update(schema.added_assignments)
                    .where(
                        and_(
                            s.analysis_id == analysis_id, s.tenant_id == self.tenant_id, s.ordinal.in_(chunk)
                        )
                    )
                    .values(released_revision=new.revision)
                )
            insert_chunked(conn, schema.revision_clusters, self._cluster_rows(analysis_id, new))

    def _cluster_rows(self, analysis_id: str, new: NewRevision) -> Iterable[dict[str, object]]:
        for item in new.clusters:
            yield {
                "analysis_id": analysis_id,
                "revision": new.revision,
                "cluster_id": item.cluster.id,
                "tenant_id": self.tenant_id,
                "size": item.cluster.size,
                "distinct_users": item.cluster.distinct_users,
                "facets": encode_distributions(item.facets),
            }


def _same_conversation(table: Table = schema.added_assignments) -> ColumnElement[bool]:
    """The join condition of ``table``'s rows with their conversation rows."""
    c = schema.conversations.c
    return and_(table.c.analysis_id == c.analysis_id, table.c.ordinal == c.ordinal)
