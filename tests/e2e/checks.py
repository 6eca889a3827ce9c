"""Assertions about a complete result set, shared by the e2e tests."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from briefxai.gateway.v1 import gateway_pb2
from briefxai_cli.inputs import ConversationRecord


def check_complete_results(
    results: gateway_pb2.GetAnalysisResultsResponse, records: Sequence[ConversationRecord]
) -> None:
    """Every conversation reported once or withheld; cluster counts add up through every level."""
    sent = {r.id: r for r in records}
    rows = list(results.conversations)
    counts = Counter(row.conversation_id for row in rows)
    duplicated = sorted(cid for cid, n in counts.items() if n > 1)
    assert not duplicated, f"conversations listed more than once: {duplicated[:5]}"
    assert set(counts) == set(sent), (
        f"missing {sorted(set(sent) - set(counts))[:5]}, unexpected {sorted(set(counts) - set(sent))[:5]}"
    )
    assert results.total_conversations == len(sent)
    withheld = [row for row in rows if row.withheld]
    assert results.withheld_conversations == len(withheld)
    assert all(not row.cluster_id for row in withheld), "a withheld conversation names a cluster"

    clusters = {item.cluster.id: item.cluster for item in results.clusters}
    assert len(clusters) == len(results.clusters), "duplicate cluster ids"
    base_level = min(c.level for c in clusters.values())
    members: dict[str, list[str]] = {}
    for row in rows:
        if row.withheld:
            continue
        cluster = clusters.get(row.cluster_id)
        assert cluster is not None, f"{row.conversation_id} is in unknown cluster {row.cluster_id!r}"
        assert cluster.level == base_level, f"{row.conversation_id} is assigned to a non-base cluster"
        members.setdefault(cluster.id, []).append(row.conversation_id)

    children: dict[str, list[str]] = {}
    for cluster in clusters.values():
        if cluster.parent_id:
            parent = clusters.get(cluster.parent_id)
            assert parent is not None, f"{cluster.id} has unknown parent {cluster.parent_id}"
            assert parent.level > cluster.level
            children.setdefault(parent.id, []).append(cluster.id)

    def under(cluster_id: str) -> list[str]:
        """Conversations below a node, computed from the leaves."""
        own = list(members.get(cluster_id, []))
        for child in children.get(cluster_id, []):
            own += under(child)
        return own

    for cluster in clusters.values():
        assert sorted(cluster.child_ids) == sorted(children.get(cluster.id, [])), f"child_ids of {cluster.id}"
        conversations = under(cluster.id)
        assert cluster.size == len(conversations), (
            f"{cluster.id} (level {cluster.level}) size {cluster.size} != {len(conversations)} conversations below"
        )
        if children.get(cluster.id):
            assert cluster.size == sum(clusters[c].size for c in children[cluster.id])
        users = {sent[cid].user_id or cid for cid in conversations}
        assert cluster.distinct_users == len(users), f"{cluster.id} distinct_users"
        assert cluster.name.strip(), f"{cluster.id} has no name"

    top = [c for c in clusters.values() if not c.parent_id]
    assert sum(c.size for c in top) == len(rows) - len(withheld)
