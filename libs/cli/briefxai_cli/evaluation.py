"""How well a cluster hierarchy agrees with known labels, and whether two runs gave the same partition.

Plain maths over plain data (no gRPC): clusters are ``(id, level, parent_id)`` nodes, assignments map
each conversation id to its base cluster id (``None`` or ``""`` when withheld by the privacy filter).

Agreement is chance-adjusted (AMI, ARI) as well as homogeneity (each cluster holds one label) and
completeness (each label sits in one cluster); raw NMI is not reported because it rises with the number
of clusters even for random labels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sklearn.metrics import (
    adjusted_mutual_info_score,
    adjusted_rand_score,
    homogeneity_completeness_v_measure,
)


@dataclass(frozen=True)
class ClusterNode:
    id: str
    level: int
    parent_id: str = ""


@dataclass(frozen=True)
class LevelScore:
    level: int
    conversations: int
    clusters: int
    labels: int
    ami: float
    ari: float
    homogeneity: float
    completeness: float
    v_measure: float


@dataclass(frozen=True)
class EvaluationReport:
    total: int
    withheld: int
    unlabelled: int
    levels: list[LevelScore]

    @property
    def scored(self) -> int:
        return self.total - self.withheld - self.unlabelled


@dataclass(frozen=True)
class RunComparison:
    """Per level: ARI between two runs over the conversations both reported, and exact equality."""

    same_withheld: bool
    ari_by_level: dict[int, float] = field(default_factory=dict)
    identical_by_level: dict[int, bool] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        return self.same_withheld and bool(self.identical_by_level) and all(self.identical_by_level.values())


def level_partitions(
    clusters: Iterable[ClusterNode], assignments: Mapping[str, str | None]
) -> dict[int, dict[str, str]]:
    """For every level, each reported conversation's ancestor cluster at that level.

    A conversation whose branch has no node at some level (an uneven tree) keeps its highest ancestor
    below that level, so every level is a partition of the same conversations.
    """
    nodes = {node.id: node for node in clusters}
    if not nodes:
        return {}
    levels = sorted({node.level for node in nodes.values()})
    chains: dict[str, list[ClusterNode]] = {}
    result: dict[int, dict[str, str]] = {level: {} for level in levels}
    for conversation_id, cluster_id in assignments.items():
        if not cluster_id:
            continue
        chain = chains.get(cluster_id)
        if chain is None:
            chain = chains[cluster_id] = _ancestors(cluster_id, nodes)
        for level in levels:
            if level < chain[0].level:
                continue
            chosen = chain[0]
            for node in chain:
                if node.level <= level:
                    chosen = node
            result[level][conversation_id] = chosen.id
    return {level: members for level, members in result.items() if members}


def _ancestors(cluster_id: str, nodes: Mapping[str, ClusterNode]) -> list[ClusterNode]:
    node = nodes.get(cluster_id)
    if node is None:
        raise ValueError(f"conversation assigned to unknown cluster {cluster_id!r}")
    chain = [node]
    seen = {node.id}
    while node.parent_id:
        parent = nodes.get(node.parent_id)
        if parent is None:
            raise ValueError(f"cluster {node.id!r} has unknown parent {node.parent_id!r}")
        if parent.id in seen:
            raise ValueError(f"cluster hierarchy has a cycle through {parent.id!r}")
        seen.add(parent.id)
        chain.append(parent)
        node = parent
    return chain


def agreement(labels: list[str], predicted: list[str], level: int = 0) -> LevelScore:
    """Chance-adjusted and information-theoretic agreement of one partition with the labels."""
    if len(labels) != len(predicted):
        raise ValueError("labels and predicted must have the same length")
    if not labels:
        nan = math.nan
        return LevelScore(level, 0, 0, 0, nan, nan, nan, nan, nan)
    homogeneity, completeness, v_measure = homogeneity_completeness_v_measure(labels, predicted)
    return LevelScore(
        level=level,
        conversations=len(labels),
        clusters=len(set(predicted)),
        labels=len(set(labels)),
        ami=float(adjusted_mutual_info_score(labels, predicted)),
        ari=float(adjusted_rand_score(labels, predicted)),
        homogeneity=float(homogeneity),
        completeness=float(completeness),
        v_measure=float(v_measure),
    )


def evaluate(
    clusters: Iterable[ClusterNode], assignments: Mapping[str, str | None], labels: Mapping[str, str]
) -> EvaluationReport:
    """Scores every level against ``labels``; withheld and unlabelled conversations are counted, not scored."""
    withheld = sum(1 for cluster_id in assignments.values() if not cluster_id)
    unlabelled = sum(1 for cid, cluster_id in assignments.items() if cluster_id and not labels.get(cid))
    partitions = level_partitions(clusters, assignments)
    scores = []
    for level, members in sorted(partitions.items()):
        ids = [cid for cid in members if labels.get(cid)]
        scores.append(agreement([labels[cid] for cid in ids], [members[cid] for cid in ids], level))
    return EvaluationReport(len(assignments), withheld, unlabelled, scores)


def compare_runs(
    first: tuple[Iterable[ClusterNode], Mapping[str, str | None]],
    second: tuple[Iterable[ClusterNode], Mapping[str, str | None]],
) -> RunComparison:
    """Whether two results partition the conversations the same way at every level (ids may differ)."""
    withheld_a = {cid for cid, cluster in first[1].items() if not cluster}
    withheld_b = {cid for cid, cluster in second[1].items() if not cluster}
    same_withheld = withheld_a == withheld_b and set(first[1]) == set(second[1])
    parts_a = level_partitions(*first)
    parts_b = level_partitions(*second)
    ari: dict[int, float] = {}
    identical: dict[int, bool] = {}
    for level in sorted(set(parts_a) | set(parts_b)):
        a, b = parts_a.get(level, {}), parts_b.get(level, {})
        common = sorted(set(a) & set(b))
        if common:
            ari[level] = float(adjusted_rand_score([a[c] for c in common], [b[c] for c in common]))
        else:
            ari[level] = math.nan
        identical[level] = set(a) == set(b) and same_partition(a, b)
    return RunComparison(same_withheld, ari, identical)


def same_partition(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """True when both map the same items into the same groups, whatever the group names."""
    if set(a) != set(b):
        return False
    return _groups(a) == _groups(b)


def _groups(assignment: Mapping[str, str]) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for item, group in assignment.items():
        groups.setdefault(group, set()).add(item)
    return {frozenset(members) for members in groups.values()}


# --------------------------------------------------------------------------------------------------
# Reading results and labels


def from_results(document: Mapping[str, Any]) -> tuple[list[ClusterNode], dict[str, str | None]]:
    """Clusters and assignments from an ``analysis.json`` (GetAnalysisResultsResponse as JSON)."""
    nodes = []
    for item in document.get("clusters", []):
        cluster = item.get("cluster", item)
        nodes.append(
            ClusterNode(str(cluster["id"]), int(cluster.get("level", 0)), str(cluster.get("parent_id", "")))
        )
    assignments: dict[str, str | None] = {}
    for conversation in document.get("conversations", []):
        withheld = bool(conversation.get("withheld", False))
        cluster_id = conversation.get("cluster_id") or None
        assignments[str(conversation["conversation_id"])] = None if withheld else cluster_id
    return nodes, assignments


def lookup(record: Mapping[str, Any], key: str) -> str | None:
    """The value at a dotted path such as ``metadata.label`` or ``user_id``, as text; None when absent."""
    value: Any = record
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    if value is None or isinstance(value, Mapping | list):
        return None
    text = str(value)
    return text or None
