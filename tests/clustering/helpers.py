"""Checks shared by the clustering tests: a result is a consistent, privacy-respecting tree."""

from __future__ import annotations

from collections import Counter

from briefxai_clustering.model import ClusteringInput, ClusteringParams, ClusteringResult


def assert_consistent(result: ClusteringResult, data: ClusteringInput, params: ClusteringParams) -> None:
    """Assignments, tree, sizes, users, thresholds and map points agree with each other and the input."""
    assert [a.conversation_id for a in result.assignments] == list(data.ids)
    nodes = {c.id: c for c in result.clusters}
    assert len(nodes) == len(result.clusters)
    for a in result.assignments:
        assert a.withheld == (a.cluster_id == "")
        if not a.withheld:
            assert nodes[a.cluster_id].level == 0
    reported = [a for a in result.assignments if not a.withheld]
    assert result.withheld_count == len(result.assignments) - len(reported)
    base_sizes = Counter(a.cluster_id for a in reported)
    users = {
        i: (data.user_ids[i] if data.user_ids and data.user_ids[i] else f"\0{i}")
        for i in range(len(data.ids))
    }
    members: dict[str, set[int]] = {c.id: set() for c in result.clusters}
    for i, a in enumerate(result.assignments):
        node_id = a.cluster_id
        while node_id:
            members[node_id].add(i)
            node_id = nodes[node_id].parent_id
    for node in result.clusters:
        assert node.size == len(members[node.id]) > 0
        assert node.distinct_users == len({users[i] for i in members[node.id]})
        assert node.size >= params.min_cluster_size
        assert node.distinct_users >= params.min_distinct_users
        if node.level == 0:
            assert node.size == base_sizes[node.id]
            assert node.child_ids == []
        else:
            assert node.child_ids
            assert node.size == sum(nodes[c].size for c in node.child_ids)
        for child in node.child_ids:
            assert nodes[child].parent_id == node.id
            assert nodes[child].level == node.level - 1
        if node.parent_id:
            assert node.id in nodes[node.parent_id].child_ids
        assert node.name
    top = [c for c in result.clusters if not c.parent_id]
    if result.clusters:
        assert {c.level for c in top} == {max(c.level for c in result.clusters)}
        assert sum(c.size for c in top) == len(reported)
    if params.skip_map:
        assert result.points == []
    else:
        assert [p.conversation_id for p in result.points] == [a.conversation_id for a in reported]
        for p in result.points:
            assert -1.0 - 1e-6 <= p.x <= 1.0 + 1e-6 and -1.0 - 1e-6 <= p.y <= 1.0 + 1e-6
