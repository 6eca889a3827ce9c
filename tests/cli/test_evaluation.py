"""Evaluation maths: partitions per level, chance-adjusted agreement, run comparison."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from briefxai.common.v1 import common_pb2
from briefxai.gateway.v1 import gateway_pb2
from briefxai_cli.client import to_json
from briefxai_cli.evaluation import (
    ClusterNode,
    agreement,
    compare_runs,
    evaluate,
    from_results,
    level_partitions,
    lookup,
    same_partition,
)

# Two top clusters over four base clusters.
TREE = [
    ClusterNode("L0-0", 0, "L1-0"),
    ClusterNode("L0-1", 0, "L1-0"),
    ClusterNode("L0-2", 0, "L1-1"),
    ClusterNode("L0-3", 0, "L1-1"),
    ClusterNode("L1-0", 1),
    ClusterNode("L1-1", 1),
]
ASSIGN: dict[str, str | None] = {
    "a": "L0-0",
    "b": "L0-0",
    "c": "L0-1",
    "d": "L0-2",
    "e": "L0-3",
    "f": None,
}


def test_level_partitions_walk_up_the_tree_and_skip_withheld() -> None:
    parts = level_partitions(TREE, ASSIGN)
    assert parts[0] == {"a": "L0-0", "b": "L0-0", "c": "L0-1", "d": "L0-2", "e": "L0-3"}
    assert parts[1] == {"a": "L1-0", "b": "L1-0", "c": "L1-0", "d": "L1-1", "e": "L1-1"}


def test_uneven_tree_keeps_the_highest_ancestor_below_each_level() -> None:
    tree = [
        ClusterNode("b0", 0, "m1"),
        ClusterNode("m1", 1, "t2"),
        ClusterNode("t2", 2),
        ClusterNode("b1", 0, "t2"),
    ]
    parts = level_partitions(tree, {"x": "b0", "y": "b1"})
    assert parts[1] == {"x": "m1", "y": "b1"}
    assert parts[2] == {"x": "t2", "y": "t2"}


def test_unknown_cluster_and_cycles_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown cluster"):
        level_partitions(TREE, {"a": "nope"})
    with pytest.raises(ValueError, match="cycle"):
        level_partitions([ClusterNode("x", 0, "y"), ClusterNode("y", 1, "x")], {"a": "x"})


def test_perfect_agreement_whatever_the_cluster_names() -> None:
    score = agreement(["p", "p", "q", "q", "r"], ["7", "7", "3", "3", "1"])
    assert score.ami == pytest.approx(1.0) and score.ari == pytest.approx(1.0)
    assert score.homogeneity == pytest.approx(1.0) and score.completeness == pytest.approx(1.0)
    assert (score.clusters, score.labels, score.conversations) == (3, 3, 5)


def test_random_clusters_score_near_zero_when_chance_adjusted() -> None:
    rng = random.Random(1)
    labels = [rng.choice("abcdef") for _ in range(3000)]
    clusters = [str(rng.randrange(40)) for _ in range(3000)]
    score = agreement(labels, clusters)
    assert abs(score.ami) < 0.02 and abs(score.ari) < 0.02
    # Homogeneity rises with the number of clusters even for random assignments; AMI does not.
    assert score.homogeneity > score.ami + 0.01


def test_splitting_a_label_lowers_completeness_not_homogeneity() -> None:
    score = agreement(["a"] * 4 + ["b"] * 4, ["1", "1", "2", "2", "3", "3", "3", "3"])
    assert score.homogeneity == pytest.approx(1.0)
    assert score.completeness < 1.0
    assert 0 < score.ari < 1


def test_empty_agreement_is_nan() -> None:
    score = agreement([], [])
    assert math.isnan(score.ami) and score.conversations == 0


def test_evaluate_excludes_and_counts_withheld_and_unlabelled() -> None:
    labels = {"a": "x", "b": "x", "c": "x", "d": "y", "f": "y"}  # e has no label, f is withheld
    report = evaluate(TREE, ASSIGN, labels)
    assert (report.total, report.withheld, report.unlabelled, report.scored) == (6, 1, 1, 4)
    level0, level1 = report.levels
    assert level0.conversations == level1.conversations == 4
    assert level1.ami == pytest.approx(1.0) and level1.ari == pytest.approx(1.0)
    assert level0.homogeneity == pytest.approx(1.0) and level0.completeness < 1.0


def test_compare_runs_ignores_cluster_names() -> None:
    renamed = {"L0-0": "B", "L0-1": "A", "L0-2": "D", "L0-3": "C", "L1-0": "T1", "L1-1": "T0"}
    tree = [ClusterNode(renamed[n.id], n.level, renamed.get(n.parent_id, "")) for n in TREE]
    assign = {cid: renamed[c] if c else None for cid, c in ASSIGN.items()}
    comparison = compare_runs((TREE, ASSIGN), (tree, assign))
    assert comparison.identical
    assert comparison.ari_by_level == {0: pytest.approx(1.0), 1: pytest.approx(1.0)}


def test_compare_runs_detects_a_moved_conversation_and_different_withheld_sets() -> None:
    moved = dict(ASSIGN, c="L0-2")
    comparison = compare_runs((TREE, ASSIGN), (TREE, moved))
    assert not comparison.identical
    assert comparison.identical_by_level == {0: False, 1: False}
    assert comparison.ari_by_level[0] < 1.0

    withheld = dict(ASSIGN, e=None)
    comparison = compare_runs((TREE, ASSIGN), (TREE, withheld))
    assert not comparison.same_withheld and not comparison.identical


@given(st.lists(st.integers(0, 5), min_size=1, max_size=40), st.permutations(list(range(6))))
def test_same_partition_is_invariant_under_renaming(groups: list[int], perm: list[int]) -> None:
    a = {f"c{i}": f"g{g}" for i, g in enumerate(groups)}
    b = {f"c{i}": f"h{perm[g]}" for i, g in enumerate(groups)}
    assert same_partition(a, b)
    if len(set(groups)) > 1:
        merged = {k: "one" for k in a}
        assert not same_partition(a, merged)


@given(
    st.lists(st.sampled_from("abcd"), min_size=2, max_size=60),
    st.lists(st.integers(0, 6), min_size=60, max_size=60),
)
def test_scores_are_bounded_and_symmetric_where_defined(labels: list[str], clusters: list[int]) -> None:
    predicted = [str(c) for c in clusters[: len(labels)]]
    forward = agreement(labels, predicted)
    backward = agreement(predicted, labels)
    assert -1.0 <= forward.ari <= 1.0 and forward.ami <= 1.0 + 1e-9
    assert forward.ari == pytest.approx(backward.ari)
    assert forward.ami == pytest.approx(backward.ami, abs=1e-9)
    assert forward.homogeneity == pytest.approx(backward.completeness)


def test_from_results_reads_analysis_json_shape() -> None:
    response = gateway_pb2.GetAnalysisResultsResponse(
        clusters=[
            gateway_pb2.ClusterResult(cluster=common_pb2.Cluster(id="L0-0", level=0, parent_id="L1-0")),
            gateway_pb2.ClusterResult(cluster=common_pb2.Cluster(id="L1-0", level=1)),
        ],
        conversations=[
            gateway_pb2.ConversationResult(conversation_id="a", cluster_id="L0-0"),
            gateway_pb2.ConversationResult(conversation_id="b", withheld=True),
        ],
    )
    nodes, assignments = from_results(to_json(response))
    assert nodes == [ClusterNode("L0-0", 0, "L1-0"), ClusterNode("L1-0", 1, "")]
    assert assignments == {"a": "L0-0", "b": None}


def test_lookup_dotted_paths() -> None:
    record = {"id": "x", "user_id": "", "metadata": {"label": "topic", "n": 3, "deep": {"k": "v"}}}
    assert lookup(record, "metadata.label") == "topic"
    assert lookup(record, "metadata.n") == "3"
    assert lookup(record, "metadata.deep.k") == "v"
    assert lookup(record, "metadata.deep") is None
    assert lookup(record, "metadata.missing") is None
    assert lookup(record, "user_id") is None
    assert lookup(record, "id") == "x"
