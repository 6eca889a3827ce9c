"""The gateway store on a temporary SQLite file (briefxai_gateway.store)."""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from briefxai_gateway import schema
from briefxai_gateway.models import (
    AnalysisOptions,
    AnalysisState,
    AssignmentRow,
    ClusterNode,
    Conversation,
    EmbedTextMode,
    FacetDefinition,
    FacetDistribution,
    FacetType,
    FacetValue,
    Message,
    PackedBatch,
    Stage,
)
from briefxai_gateway.store import DuplicateRequestId, Store, StoreInconsistent
from tests.support.migrations import store_at


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store(f"sqlite:///{tmp_path}/nested/gateway.db")
    db.migrate()
    yield db
    db.close()


def convs(n: int, prefix: str = "c") -> list[Conversation]:
    return [
        Conversation(
            f"{prefix}{i}",
            f"u{i % 3}",
            [Message("user", f"question {i}"), Message("assistant", "answer")],
            {"k": "v"},
        )
        for i in range(n)
    ]


def packed(count: int, dim: int, start: float = 0.0) -> PackedBatch:
    values = [start + i for i in range(count * dim)]
    return PackedBatch(struct.pack(f"<{len(values)}f", *values), dim, count)


def test_sqlite_file_uses_wal_and_migrations_match_the_schema(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "nested" / "gateway.db"
    assert path.exists()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "0004"
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    assert diff == []
    store.migrate()  # idempotent


def test_an_analysis_stored_at_revision_0001_reads_after_the_upgrade(tmp_path: Path) -> None:
    """0001 rows have no error code and stored 0 for "the clustering service's default"."""
    db = store_at(
        f"sqlite:///{tmp_path}/old.db",
        "0001",
        "INSERT INTO analyses (id, tenant_id, state, options, conversation_count, batch_size, create_time, "
        "update_time, error, upload_complete) VALUES ('old', 'default', 'failed', "
        '\'{"k": 0, "hierarchy_depth": 0, "min_cluster_size": 0, "min_distinct_users": 4, '
        "\"seed\": 3}', 0, 2, '2026-01-01 00:00:00', '2026-01-01 00:00:00', 'down', 1)",
    )
    db.migrate()
    old = db.get_analysis("old")
    db.close()
    assert old is not None and (old.error, old.error_code) == ("down", "")
    options = old.options
    assert (options.k, options.hierarchy_depth, options.min_cluster_size) == (None, None, None)
    assert (options.min_distinct_users, options.seed) == (4, 3)


def test_options_round_trip_keeps_an_explicit_zero_depth(store: Store) -> None:
    options = AnalysisOptions(k=None, hierarchy_depth=0, min_cluster_size=2, seed=0)
    store.create_analysis("z", request_id="", options=options, batch_size=2, conversations=convs(2))
    stored = store.get_analysis("z")
    assert stored is not None and stored.options == options


def test_create_get_and_request_id_uniqueness(store: Store) -> None:
    options = AnalysisOptions(
        facets=["task"], k=4, embed_text=EmbedTextMode.USER_MESSAGES, display_name="demo"
    )
    created = store.create_analysis(
        "a1", request_id="req-1", options=options, batch_size=2, conversations=convs(3)
    )
    assert created.state is AnalysisState.PENDING
    assert created.conversation_count == 3
    assert created.options == options
    assert created.progress[Stage.VALIDATE].done == 3
    assert created.stage is Stage.VALIDATE
    assert store.get_analysis("a1") == created
    assert store.find_by_request_id("req-1") == created
    with pytest.raises(DuplicateRequestId):
        store.create_analysis("a2", request_id="req-1", options=options, batch_size=2)
    # Requests without an id never collide.
    store.create_analysis("a3", request_id="", options=options, batch_size=2, conversations=convs(1))
    store.create_analysis("a4", request_id="", options=options, batch_size=2, conversations=convs(1))
    assert store.get_analysis("nope") is None


def test_list_is_newest_first_and_paged(store: Store) -> None:
    for i in range(5):
        store.create_analysis(
            f"a{i}", request_id="", options=AnalysisOptions(), batch_size=2, conversations=convs(1)
        )
    store.create_analysis(
        "hidden", request_id="", options=AnalysisOptions(), batch_size=2, upload_complete=False
    )
    page, after = store.list_analyses(2, None)
    assert [a.id for a in page] == ["a4", "a3"]
    page, after = store.list_analyses(2, after)
    assert [a.id for a in page] == ["a2", "a1"]
    page, after = store.list_analyses(2, after)
    assert [a.id for a in page] == ["a0"]
    assert after is None
    assert store.abandoned_upload_ids() == ["hidden"]


def test_batches_checkpoints_progress_and_warnings(store: Store) -> None:
    store.create_analysis("a", request_id="", options=AnalysisOptions(), batch_size=2, conversations=convs(3))
    assert store.set_running("a")
    assert [c.id for c in store.load_conversations("a", 0, 2)] == ["c0", "c1"]
    assert store.load_conversations("a", 2, 4)[0].metadata == {"k": "v"}
    values = [
        [FacetValue("task", text="coding", provider="heuristic"), FacetValue("sentiment", number=0.5)],
        [FacetValue("task", failed=True, error="no provider")],
    ]
    store.save_facets_batch("a", 0, 0, values, {"facet_failed:task": 1})
    store.save_embeddings_batch("a", 1, 2, packed(1, 2, 100.0), "m", {})
    done = store.done_batches("a")
    assert done[Stage.FACETS] == {0} and done[Stage.EMBED] == {1}
    analysis = store.get_analysis("a")
    assert analysis is not None
    assert analysis.state is AnalysisState.RUNNING
    assert (analysis.progress[Stage.FACETS].done, analysis.progress[Stage.EMBED].done) == (2, 1)
    assert analysis.stage is Stage.FACETS
    assert analysis.warnings == ["facet 'task' could not be extracted for 1 conversation(s)"]
    facets = store.load_facets("a", 0, 2)
    assert {v.facet: v.number for v in facets[0]} == {"sentiment": 0.5, "task": None}
    assert facets[1][0].failed
    with pytest.raises(StoreInconsistent):
        store.load_vector_range("a", 0, 3)  # batch 0 is missing
    store.save_embeddings_batch("a", 0, 0, packed(2, 2), "m", {})
    vectors = store.load_vector_range("a", 0, 3)
    assert (vectors.count, vectors.dim) == (3, 2)
    assert struct.unpack("<6f", vectors.data) == (0.0, 1.0, 2.0, 3.0, 100.0, 101.0)
    assert store.request_texts_by_index("a") == {}
    rows = list(store.iter_conversation_rows("a", with_messages=False))
    assert rows[0] == (0, "c0", "u0", None)


def test_vector_ranges_cut_across_embedding_batches(store: Store) -> None:
    """Any [start, end) gives exactly those rows, whatever the batch boundaries (batches of 4, 4, 3)."""
    store.create_analysis(
        "a", request_id="", options=AnalysisOptions(), batch_size=4, conversations=convs(11)
    )
    for batch, (start, count) in enumerate([(0, 4), (4, 4), (8, 3)]):
        store.save_embeddings_batch("a", batch, start, packed(count, 3, start * 3.0), "m", {})
    every = [float(v) for v in range(11 * 3)]
    for start, end in [(0, 11), (0, 4), (1, 3), (3, 9), (4, 8), (5, 11), (10, 11), (6, 6)]:
        vectors = store.load_vector_range("a", start, end)
        assert vectors.count == end - start and vectors.dim in ((3,) if end > start else (0, 3))
        assert list(struct.unpack(f"<{(end - start) * 3}f", vectors.data)) == every[start * 3 : end * 3]
    with pytest.raises(StoreInconsistent, match=r"ordinals \[11, 12\) have no vectors"):
        store.load_vector_range("a", 9, 12)
    with pytest.raises(ValueError):
        store.load_vector_range("a", 5, 4)


def test_vector_range_with_a_missing_batch_in_the_middle_is_inconsistent(store: Store) -> None:
    store.create_analysis("a", request_id="", options=AnalysisOptions(), batch_size=2, conversations=convs(6))
    store.save_embeddings_batch("a", 0, 0, packed(2, 2), "m", {})
    store.save_embeddings_batch("a", 2, 4, packed(2, 2), "m", {})
    assert store.load_vector_range("a", 0, 2).count == 2
    assert store.load_vector_range("a", 4, 6).count == 2
    with pytest.raises(StoreInconsistent, match="gap at ordinal 2"):
        store.load_vector_range("a", 1, 5)
    with pytest.raises(StoreInconsistent, match="gap at ordinal 2"):
        store.load_vector_range("a", 2, 5)


def test_conversation_rows_and_request_texts_by_ordinal_range(store: Store) -> None:
    store.create_analysis("a", request_id="", options=AnalysisOptions(), batch_size=4, conversations=convs(6))
    values = [[FacetValue("request", text=f"summary {i}")] if i % 2 else [] for i in range(6)]
    store.save_facets_batch("a", 0, 0, values, {})
    rows = list(store.iter_conversation_rows("a", with_messages=True, start=2, end=5))
    assert [(r[0], r[1], r[2]) for r in rows] == [(2, "c2", "u2"), (3, "c3", "u0"), (4, "c4", "u1")]
    assert all(r[3] is not None and "question" in r[3] for r in rows)
    assert store.request_texts_by_index("a", 2, 5) == {3: "summary 3"}
    assert store.request_texts_by_index("a") == {1: "summary 1", 3: "summary 3", 5: "summary 5"}


def test_results_are_saved_atomically_and_only_while_running(store: Store) -> None:
    store.create_analysis("a", request_id="", options=AnalysisOptions(), batch_size=2, conversations=convs(2))
    clusters = [
        ClusterNode("L0-0", 0, "L1-0", [], "Passwords", "Resets", 2, 2, ["reset"]),
        ClusterNode("L1-0", 1, "", ["L0-0"], "Accounts", "Account help", 2, 2, []),
    ]
    distributions = {"L0-0": [FacetDistribution("sentiment", {"positive": 2}, 0.4)]}
    assignments = [AssignmentRow(0, "c0", "L0-0", False, 0.5, -1.0), AssignmentRow(1, "c1", "", True)]
    meta = {"k": 1, "k_rule": "fixed", "withheld_count": 1}
    # Not RUNNING yet: nothing is written.
    assert not store.save_results("a", clusters, distributions, assignments, meta, {"withheld": 1})
    assert store.row_counts("a")["clusters"] == 0
    store.set_running("a")
    assert store.save_results("a", clusters, distributions, assignments, meta, {"withheld": 1})
    analysis = store.get_analysis("a")
    assert analysis is not None
    assert analysis.state is AnalysisState.SUCCEEDED
    assert (analysis.k, analysis.k_rule, analysis.withheld_count) == (1, "fixed", 1)
    assert analysis.stage is Stage.STORE
    assert any("withheld" in w for w in analysis.warnings)
    loaded = store.load_clusters("a")
    assert [c.cluster.id for c in loaded] == ["L0-0", "L1-0"]
    assert loaded[0].facets == distributions["L0-0"]
    assert loaded[1].cluster.child_ids == ["L0-0"]
    rows = store.load_result_rows("a", 0, 2)
    assert rows[0][2] is not None and rows[0][2].x == 0.5
    assert rows[1][2] is not None and rows[1][2].withheld
    # Terminal states are final.
    assert not store.finish("a", AnalysisState.CANCELLED)


def test_finish_and_delete_leave_no_rows(store: Store) -> None:
    store.create_analysis(
        "a", request_id="r", options=AnalysisOptions(), batch_size=2, conversations=convs(2)
    )
    store.create_analysis("b", request_id="", options=AnalysisOptions(), batch_size=2, conversations=convs(2))
    store.set_running("a")
    store.set_facet_definitions("a", [FacetDefinition("turns", FacetType.NUMBER, 0.0, float("inf"))])
    assert store.facet_definitions("a") == [FacetDefinition("turns", FacetType.NUMBER, 0.0, float("inf"))]
    store.save_facets_batch("a", 0, 0, [[FacetValue("turns", number=2.0)], []], {})
    store.save_embeddings_batch("a", 0, 0, packed(2, 2), "m", {})
    assert store.finish("a", AnalysisState.FAILED, "boom", "UNAVAILABLE")
    assert not store.set_running("a")
    failed = store.get_analysis("a")
    assert failed is not None and (failed.error, failed.error_code) == ("boom", "UNAVAILABLE")
    assert store.delete_analysis("a")
    assert set(store.row_counts("a").values()) == {0}
    assert store.row_counts("b")["conversations"] == 2
    assert not store.delete_analysis("a")
    assert store.find_by_request_id("r") is None


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(ValueError):
        Store("sqlite://")
