"""Revisions of the results without services: the 0003 -> 0004 migration, the centroids and threshold,
the privacy rule on what a revision adds, distribution merging, and the store's revision writes."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from briefxai_gateway.centroids import CentroidBuilder, Centroids
from briefxai_gateway.distributions import DistributionBuilder, merge
from briefxai_gateway.models import (
    AnalysisOptions,
    AnalysisState,
    AssignmentRow,
    ClusterNode,
    ClusterWithFacets,
    Conversation,
    FacetDefinition,
    FacetDistribution,
    FacetType,
    FacetValue,
    Message,
    PackedBatch,
)
from briefxai_gateway.revisions import (
    Member,
    PrivacyRule,
    RevisionState,
    RevisionSummary,
    base_state,
    next_revision,
    user_key,
)
from briefxai_gateway.store import DuplicateRequestId, RevisionConflict, Store
from tests.support.migrations import store_at

SENTIMENT = FacetDefinition("sentiment", FacetType.NUMBER, -1.0, 1.0)
TASK = FacetDefinition("task", FacetType.ENUM, choices=("coding", "writing"))
DEFINITIONS = {d.name: d for d in (SENTIMENT, TASK)}
RULE = PrivacyRule(min_cluster_size=3, min_distinct_users=2)


def packed(rows: list[list[float]]) -> PackedBatch:
    flat = [v for row in rows for v in row]
    return PackedBatch(struct.pack(f"<{len(flat)}f", *flat), len(rows[0]) if rows else 0, len(rows))


def test_an_0003_store_upgrades(tmp_path: Path) -> None:
    db = store_at(
        f"sqlite:///{tmp_path}/old.db",
        "0003",
        "INSERT INTO analyses (id, tenant_id, state, options, conversation_count, batch_size, create_time, "
        "update_time, error, error_code, upload_complete, result_meta) VALUES ('old', 'default', 'succeeded', "
        "'{\"version\": 2, \"k\": 2}', 2, 2, '2026-01-01 00:00:00', '2026-01-01 00:00:00', '', '', 1, "
        '\'{"k": 2, "withheld_count": 1}\')',
    )
    db.migrate()
    old = db.get_analysis("old")
    assert old is not None and old.results_revision == 0 and old.withheld_count == 1
    assert db.latest_revision("old") == 0
    summary = db.revision_summary("old", 0)
    assert summary is not None and (summary.total, summary.withheld, summary.unassigned) == (2, 1, 0)
    assert db.revision_summary("old", 1) is None
    assert db.row_counts("old")["revisions"] == 0
    db.close()


def test_centroids_in_two_passes_and_the_threshold() -> None:
    # Two clusters on the x and y axes; withheld rows (-1) count for nothing.
    builder = CentroidBuilder(["a", "b", "unused"])
    chunks = [
        ([0, 0, -1], packed([[1.0, 0.0], [0.8, 0.6], [0.0, -1.0]])),
        ([1, 1], packed([[0.0, 2.0], [0.6, 0.8]])),
    ]
    for labels, vectors in chunks:
        builder.add(labels, vectors)
    for labels, vectors in chunks:
        builder.add_distances(labels, vectors)
    centroids = builder.build("model-x")
    assert centroids.cluster_ids == ["a", "b"] and centroids.members == 4
    a = np.array([1.8, 0.6]) / np.linalg.norm([1.8, 0.6])
    assert centroids.matrix[0] == pytest.approx(a.astype(np.float32), abs=1e-6)
    member_distances = sorted([1 - a @ [1.0, 0.0], 1 - a @ [0.8, 0.6], 0.0, 0.0])
    assert centroids.distance_percentiles[100] == pytest.approx(max(member_distances), abs=1e-6)
    assert centroids.max_distance(100) == pytest.approx(max(member_distances), abs=1e-6)
    rows, distances = centroids.nearest(packed([[3.0, 0.1], [-1.0, 0.0]]))
    assert rows.tolist() == [0, 1]
    assert distances[1] == pytest.approx(1.0 - float(centroids.matrix[1] @ [-1.0, 0.0]), abs=1e-6)
    again = Centroids.from_bytes(
        centroids.cluster_ids, centroids.to_bytes(), 2, 4, centroids.distance_percentiles, "model-x"
    )
    assert (again.matrix == centroids.matrix).all() and again.model == "model-x"


def test_merging_distributions_sums_counts_and_weights_means() -> None:
    earlier = [
        FacetDistribution("sentiment", {"negative": 1, "neutral": 0, "positive": 1}, 0.2),
        FacetDistribution("task", {"coding": 2}),
    ]
    added = [
        FacetDistribution("language", {"en": 1}),
        FacetDistribution("sentiment", {"negative": 0, "neutral": 1, "positive": 0}, 0.5),
    ]
    merged = merge(earlier, added)
    assert [d.facet for d in merged] == ["language", "sentiment", "task"]
    assert merged[1].counts == {"negative": 1, "neutral": 1, "positive": 1}
    assert merged[1].mean == pytest.approx((0.2 * 2 + 0.5) / 3)
    assert earlier[0].counts["neutral"] == 0  # inputs untouched
    # `counted` keeps the facets an analysis counts, whatever their labels here.
    builder = DistributionBuilder(DEFINITIONS)
    for i in range(60):
        builder.add("c", "topic", f"label {i}", None)
        builder.add("c", "request", f"summary {i}", None)
    assert builder.build([ClusterNode("c", 0, "", [], "", "", 60, 9, [])]) == {"c": []}
    counted = builder.build([ClusterNode("c", 0, "", [], "", "", 60, 9, [])], counted={"topic"})
    assert [d.facet for d in counted["c"]] == ["topic"] and sum(counted["c"][0].counts.values()) == 60


def tree() -> list[ClusterWithFacets]:
    """Two base clusters under one parent, each of 3 conversations from 2 users."""
    coding = [FacetDistribution("sentiment", {"negative": 0, "neutral": 3, "positive": 0}, 0.0)]
    coding.append(FacetDistribution("task", {"coding": 3}))
    writing = [FacetDistribution("sentiment", {"negative": 0, "neutral": 3, "positive": 0}, 0.0)]
    writing.append(FacetDistribution("task", {"writing": 3}))
    top = [
        FacetDistribution("sentiment", {"negative": 0, "neutral": 6, "positive": 0}, 0.0),
        FacetDistribution("task", {"coding": 3, "writing": 3}),
    ]
    return [
        ClusterWithFacets(ClusterNode("L0-0", 0, "L1-0", [], "Code", "", 3, 2, []), coding),
        ClusterWithFacets(ClusterNode("L0-1", 0, "L1-0", [], "Text", "", 3, 2, []), writing),
        ClusterWithFacets(ClusterNode("L1-0", 1, "", ["L0-0", "L0-1"], "All", "", 6, 3, []), top),
    ]


def revision_zero() -> RevisionState:
    users = {"L0-0": {"u1", "u2"}, "L0-1": {"u2", "u3"}}
    return base_state(RevisionSummary(0, 7, 1, 0), tree(), users, [])


def member(ordinal: int, cluster: str, user: str, sentiment: float = 0.5) -> Member:
    values = [FacetValue("sentiment", number=sentiment), FacetValue("task", text="coding")]
    values.append(FacetValue("language", failed=True, error="x"))
    return Member(ordinal, f"n{ordinal}", user_key(user, ordinal), cluster, 0.1, values, 1)


def test_a_revision_reports_only_additions_that_pass_the_threshold_and_holds_back_the_rest() -> None:
    state = revision_zero()
    assert state.users["L1-0"] == {"u1", "u2", "u3"}
    # Three to L0-0 from two users (pass), two to L0-1 (held back), one unassigned.
    members = [
        member(7, "L0-0", "u4"),
        member(8, "L0-0", "u5"),
        member(9, "L0-0", "u4"),
        member(10, "L0-1", "u6"),
        member(11, "L0-1", ""),
        member(12, "", "u7"),
    ]
    new = next_revision(state, members, RULE, DEFINITIONS, max_distance=0.4, request_id="r")
    assert new.revision == 1 and new.released == {7, 8, 9} and new.released_earlier == []
    assert (new.summary.total, new.summary.withheld, new.summary.unassigned) == (13, 3, 1)
    clusters = {c.cluster.id: c for c in new.clusters}
    code = clusters["L0-0"]
    assert (code.cluster.size, code.cluster.distinct_users) == (6, 4)
    sentiment = next(d for d in code.facets if d.facet == "sentiment")
    assert sentiment.counts == {"negative": 0, "neutral": 3, "positive": 3}
    assert sentiment.mean == pytest.approx(0.25)
    assert [d.facet for d in code.facets] == ["sentiment", "task"]  # failed values are not counted
    assert clusters["L0-1"] is state.clusters[1]  # nothing reported there: unchanged
    top = clusters["L1-0"]
    assert (top.cluster.size, top.cluster.distinct_users) == (9, 5)
    assert next(d for d in top.facets if d.facet == "task").counts == {"coding": 6, "writing": 3}
    answer = new.outcome()
    assert [(a.conversation_id, a.withheld, a.unassigned) for a in answer.assignments] == [
        ("n7", False, False),
        ("n8", False, False),
        ("n9", False, False),
        ("n10", True, False),
        ("n11", True, False),
        ("n12", False, True),
    ]
    assert (answer.assigned_count, answer.unassigned_count, answer.withheld_count) == (5, 1, 2)
    assert state.summary.total == 7 and state.clusters[0].cluster.size == 3  # the state is not changed

    # One more to L0-1 releases the two held back with it.
    after = next_revision(new.state, [member(13, "L0-1", "u8", -0.5)], RULE, DEFINITIONS, max_distance=0.4)
    assert after.revision == 2 and after.released == {13} and after.released_earlier == [10, 11]
    assert after.outcome().released_count == 2
    assert (after.summary.total, after.summary.withheld, after.summary.unassigned) == (14, 1, 1)
    text = {c.cluster.id: c for c in after.clusters}["L0-1"]
    assert (text.cluster.size, text.cluster.distinct_users) == (6, 5)  # u11's empty id is a user of its own
    assert {c.cluster.id: c for c in after.clusters}["L1-0"].cluster.size == 12


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store(f"sqlite:///{tmp_path}/gateway.db")
    db.migrate()
    yield db
    db.close()


def stored_analysis(store: Store) -> None:
    """The tree of `tree()` stored as the results of a 7-conversation analysis (one withheld)."""
    users = ["u1", "u2", "u1", "u2", "u3", "u2", "u9"]
    conversations = [
        Conversation(f"c{i}", user, [Message("user", f"question {i}")]) for i, user in enumerate(users)
    ]
    store.create_analysis(
        "a", request_id="", options=AnalysisOptions(), batch_size=8, conversations=conversations
    )
    store.set_running("a")
    store.save_embeddings_batch("a", 0, 0, packed([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 4), "model-x", {})
    clusters = tree()
    rows = [AssignmentRow(i, f"c{i}", "L0-0" if i < 3 else "L0-1", False) for i in range(6)]
    rows.append(AssignmentRow(6, "c6", "", True))
    store.save_results(
        "a",
        [c.cluster for c in clusters],
        {c.cluster.id: c.facets for c in clusters},
        rows,
        {"k": 2, "withheld_count": 1},
        {},
    )


def test_the_store_writes_revisions_atomically_and_reads_them_back(store: Store) -> None:
    stored_analysis(store)
    analysis = store.get_analysis("a")
    assert analysis is not None and analysis.state is AnalysisState.SUCCEEDED
    assert store.member_clusters("a", 0, 7) == ["L0-0"] * 3 + ["L0-1"] * 3 + [""]
    assert store.embedding_model("a") == "model-x"
    state = store.load_revision_state("a", 0)
    assert state is not None and state.summary == RevisionSummary(0, 7, 1, 0)
    assert state.users["L0-0"] == {"u1", "u2"} and state.users["L1-0"] == {"u1", "u2", "u3"}

    members = [member(7, "L0-0", "u4"), member(8, "L0-0", "u5"), member(9, "L0-0", "u4")]
    members += [member(10, "L0-1", "u6"), member(11, "", "u7")]
    conversations = [Conversation(m.conversation_id, m.user, [Message("user", "new")]) for m in members]
    new = next_revision(state, members, RULE, DEFINITIONS, max_distance=0.4, request_id="req")
    with pytest.raises(RevisionConflict):
        store.save_revision("a", 1, new, conversations)  # computed from a revision it is not at
    store.save_revision("a", 0, new, conversations)
    with pytest.raises(DuplicateRequestId):  # the same request id again (as if from another replica)
        store.save_revision(
            "a", 1, next_revision(new.state, [], RULE, DEFINITIONS, max_distance=0.4, request_id="req"), []
        )
    assert store.latest_revision("a") == 1 and store.find_revision("a", "req") == 1
    assert store.find_revision("a", "other") is None
    replay = store.assign_outcome("a", 1)
    assert replay == new.outcome()
    assert replay.max_distance == 0.4
    assert store.conversation_ids("a") == {f"c{i}" for i in range(7)} | {m.conversation_id for m in members}

    again = store.load_revision_state("a", 1)
    assert again is not None and again.summary == new.summary
    assert [c.cluster for c in again.clusters] == [c.cluster for c in new.clusters]
    assert again.users == new.state.users
    assert [(m.ordinal, m.cluster_id, m.user) for m in again.pending["L0-1"]] == [(10, "L0-1", "u6")]
    assert again.pending["L0-1"][0].values[0] == FacetValue("sentiment", number=0.5)
    assert [c.cluster.size for c in store.load_clusters_at("a", 0)] == [3, 3, 6]
    assert [c.cluster.size for c in store.load_clusters_at("a", 1)] == [6, 3, 9]

    added = store.load_added_results("a", 1, 7, 12)
    assert [(r.conversation_id, r.cluster_id, r.withheld, r.unassigned, r.revision) for r in added] == [
        ("n7", "L0-0", False, False, 1),
        ("n8", "L0-0", False, False, 1),
        ("n9", "L0-0", False, False, 1),
        ("n10", "", True, False, 1),
        ("n11", "", False, True, 1),
    ]
    assert store.load_added_results("a", 0, 7, 12) == []

    # Revision 2 releases n10 with n12 and n13; revision 1 still reads it held back.
    latest = [member(12, "L0-1", "u8"), member(13, "L0-1", "u9")]
    later = next_revision(again, latest, RULE, DEFINITIONS, max_distance=0.4)
    assert later.released_earlier == [10]
    store.save_revision(
        "a", 1, later, [Conversation(m.conversation_id, m.user, [Message("user", "x")]) for m in latest]
    )
    assert [r.withheld for r in store.load_added_results("a", 1, 10, 11)] == [True]
    assert [r.cluster_id for r in store.load_added_results("a", 2, 10, 11)] == ["L0-1"]
    assert store.assign_outcome("a", 1).assignments[3].withheld  # the first answer, as it was given
    assert store.load_revision_state("a", 2).pending == {}  # type: ignore[union-attr]
    assert store.delete_analysis("a")
    assert set(store.row_counts("a").values()) == {0}
