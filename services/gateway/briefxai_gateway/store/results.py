"""An analysis's results: clusters with facet distributions, assignments and map points, written with
the last checkpoints and SUCCEEDED in one transaction, and read back page by page."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import delete, select, update

from .. import schema
from ..models import (
    AnalysisState,
    AssignmentRow,
    ClusterNode,
    ClusterWithFacets,
    FacetDistribution,
    FacetValue,
    Stage,
)
from .base import StoreBase, insert_chunked, ordinal_range, utcnow
from .checkpoints import read_facets, write_checkpoint
from .codecs import decode_distributions, dumps, encode_distributions
from .leases import hold_lease


class ResultRepository(StoreBase):
    """Clusters and per-conversation results of finished analyses."""

    def save_results(
        self,
        analysis_id: str,
        clusters: Sequence[ClusterNode],
        distributions: Mapping[str, Sequence[FacetDistribution]],
        assignments: Iterable[AssignmentRow],
        meta: Mapping[str, Any],
        warnings: Mapping[str, int],
    ) -> bool:
        """Clusters, assignments and map points, the cluster/store checkpoints and SUCCEEDED, atomically.

        ``assignments`` are consumed as they are inserted, so a caller may make them lazily (a million
        rows are never held at once). Returns False (and writes nothing) when the analysis is no longer
        RUNNING (cancelled, deleted) or another gateway holds its lease.
        """
        a = schema.analyses.c
        with self.engine.begin() as conn:
            if not hold_lease(conn, self.tenant_id, analysis_id, self.owner):
                return False  # another gateway took the run over; it writes the results
            moved = conn.execute(
                update(schema.analyses)
                .where(self._where_analysis(analysis_id), a.state == AnalysisState.RUNNING.value)
                .values(
                    state=AnalysisState.SUCCEEDED.value,
                    result_meta=dumps(dict(meta)),
                    update_time=utcnow(),
                )
            )
            if not moved.rowcount:
                return False  # nothing written; the transaction commits empty
            for table in (schema.clusters, schema.assignments):
                conn.execute(delete(table).where(table.c.analysis_id == analysis_id))
            cluster_rows = (
                {
                    "analysis_id": analysis_id,
                    "cluster_id": node.id,
                    "tenant_id": self.tenant_id,
                    "position": position,
                    "level": node.level,
                    "parent_id": node.parent_id,
                    "child_ids": dumps(node.child_ids),
                    "name": node.name,
                    "description": node.description,
                    "size": node.size,
                    "distinct_users": node.distinct_users,
                    "keywords": dumps(node.keywords),
                    "facets": encode_distributions(distributions.get(node.id, ())),
                }
                for position, node in enumerate(clusters)
            )
            insert_chunked(conn, schema.clusters, cluster_rows)
            count = 0

            def assignment_rows() -> Iterator[dict[str, Any]]:
                nonlocal count
                for item in assignments:
                    count += 1
                    yield {
                        "analysis_id": analysis_id,
                        "ordinal": item.ordinal,
                        "tenant_id": self.tenant_id,
                        "cluster_id": item.cluster_id,
                        "withheld": item.withheld,
                        "x": item.x,
                        "y": item.y,
                    }

            insert_chunked(conn, schema.assignments, assignment_rows())
            write_checkpoint(conn, self.tenant_id, analysis_id, Stage.CLUSTER, 0, count, {})
            write_checkpoint(conn, self.tenant_id, analysis_id, Stage.STORE, 0, count, warnings)
        return True

    def load_clusters(self, analysis_id: str) -> list[ClusterWithFacets]:
        c = schema.clusters.c
        query = (
            select(schema.clusters)
            .where(c.analysis_id == analysis_id, c.tenant_id == self.tenant_id)
            .order_by(c.position)
        )
        result = []
        with self.engine.connect() as conn:
            for row in conn.execute(query).mappings():
                node = ClusterNode(
                    id=row["cluster_id"],
                    level=int(row["level"]),
                    parent_id=row["parent_id"],
                    child_ids=list(json.loads(row["child_ids"])),
                    name=row["name"],
                    description=row["description"],
                    size=int(row["size"]),
                    distinct_users=int(row["distinct_users"]),
                    keywords=list(json.loads(row["keywords"])),
                )
                result.append(ClusterWithFacets(node, decode_distributions(row["facets"])))
        return result

    def load_result_rows(
        self, analysis_id: str, start: int, end: int
    ) -> list[tuple[int, str, AssignmentRow | None, list[FacetValue]]]:
        """(ordinal, conversation id, assignment, facet values) for ordinals in [start, end)."""
        c = schema.conversations.c
        s = schema.assignments.c
        ids_query = (
            select(c.ordinal, c.conversation_id)
            .where(*ordinal_range(schema.conversations, self.tenant_id, analysis_id, start, end))
            .order_by(c.ordinal)
        )
        assign_query = select(s.ordinal, s.cluster_id, s.withheld, s.x, s.y).where(
            *ordinal_range(schema.assignments, self.tenant_id, analysis_id, start, end)
        )
        with self.engine.connect() as conn:
            ids = [(int(o), cid) for o, cid in conn.execute(ids_query)]
            assigned = {
                int(o): AssignmentRow(int(o), "", cluster_id or "", bool(withheld), x, y)
                for o, cluster_id, withheld, x, y in conn.execute(assign_query)
            }
            facets = read_facets(conn, self.tenant_id, analysis_id, start, end)
        result = []
        for ordinal, cid in ids:
            row = assigned.get(ordinal)
            if row is not None:
                row.conversation_id = cid
            result.append((ordinal, cid, row, facets.get(ordinal, [])))
        return result
