"""The gateway store (briefxai_gateway.store) on a temporary SQLite file and on a fresh database of a
real PostgreSQL server (``tests/support/postgres.py``): every test that takes ``store`` runs on both."""

from __future__ import annotations

import functools
import os
import socket
import sqlite3
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from briefxai_common.resilience import Retrier, RetryPolicy, transient_store_error
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
from briefxai_gateway.store import DuplicateRequestId, LeaseLost, Store, StoreInconsistent
from tests.support.migrations import store_at

pytest_plugins = ["tests.support.postgres"]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new SQLite file, or a new database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/nested/gateway.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    db = Store(store_url)
    db.migrate()
    yield db
    db.close()


@pytest.fixture
def other_gateway(store: Store) -> Iterator[Store]:
    """The same database as ``store`` seen by another gateway (another lease owner)."""
    db = Store(store.url)
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


def test_sqlite_file_uses_wal(tmp_path: Path) -> None:
    db = Store(f"sqlite:///{tmp_path}/nested/gateway.db")
    db.migrate()
    db.close()
    path = tmp_path / "nested" / "gateway.db"
    assert path.exists()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migrations_match_the_schema(store: Store) -> None:
    with store.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == "0006"
        diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    assert diff == []
    store.migrate()  # idempotent


def test_an_analysis_stored_at_revision_0001_reads_after_the_upgrade(store_url: str) -> None:
    """0001 rows have no error code and stored 0 for "the clustering service's default"; 0005 gives them
    a free lease, so a PENDING one is claimed by the first gateway."""
    stored = '\'{"k": 0, "hierarchy_depth": 0, "min_cluster_size": 0, "min_distinct_users": 4, "seed": 3}\''
    rows = [
        f"('old', 'default', 'failed', {stored}, 0, 2, '2026-01-01 00:00:00', '2026-01-01 00:00:00', "
        "'down', TRUE)",
        f"('waiting', 'default', 'pending', {stored}, 0, 2, '2026-01-01 00:00:00', '2026-01-01 00:00:00', "
        "'', TRUE)",
    ]
    db = store_at(
        store_url,
        "0001",
        "INSERT INTO analyses (id, tenant_id, state, options, conversation_count, batch_size, create_time, "  # noqa: S608  test rows
        f"update_time, error, upload_complete) VALUES {', '.join(rows)}",
    )
    db.migrate()
    old = db.get_analysis("old")
    assert db.claimable_analysis_ids() == ["waiting"]
    assert db.claim_analysis("waiting", 30) == 1
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
    assert [i for _, i in store.abandoned_uploads()] == ["hidden"]


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


def test_a_lease_is_claimed_by_one_gateway_renewed_and_released(store: Store, other_gateway: Store) -> None:
    store.create_analysis("a", request_id="", options=AnalysisOptions(), batch_size=2, conversations=convs(3))
    assert store.claimable_analysis_ids() == other_gateway.claimable_analysis_ids() == ["a"]
    assert store.claim_analysis("a", 30) == 1
    claimed = store.get_analysis("a")
    assert claimed is not None and claimed.state is AnalysisState.RUNNING
    owner, expires, attempts = store.lease_of("a") or (None, None, 0)
    assert (owner, attempts) == (store.owner, 1) and expires is not None
    # A live lease is never taken, and the writes of a gateway that does not hold it are refused.
    assert other_gateway.claim_analysis("a", 30) is None
    assert other_gateway.claimable_analysis_ids() == []
    assert other_gateway.renew_leases(["a"], 30) == set()
    assert not other_gateway.release_lease("a")
    assert not other_gateway.set_running("a")
    with pytest.raises(LeaseLost):
        other_gateway.save_facets_batch("a", 0, 0, [[], []], {})
    with pytest.raises(LeaseLost):
        other_gateway.save_embeddings_batch("a", 0, 0, packed(2, 2), "m", {})
    assert not other_gateway.finish("a", AnalysisState.FAILED, "not mine", "INTERNAL")
    assert not other_gateway.save_results("a", [], {}, [], {}, {})
    assert store.done_batches("a")[Stage.FACETS] == set()
    # The holder writes, renews (the lease runs on) and releases; then the other gateway may claim it.
    assert store.set_running("a")
    store.save_facets_batch("a", 0, 0, [[], []], {})
    assert store.renew_leases(["a", "unknown"], 60) == {"a"}
    renewed = store.lease_of("a")
    assert renewed is not None and renewed[1] is not None and renewed[1] > expires
    assert store.release_lease("a")
    assert store.lease_of("a") == (None, None, 1)
    assert other_gateway.claim_analysis("a", 30) == 2
    assert not store.set_running("a")
    # A cancel is the user's: it applies whoever holds the lease.
    assert store.finish("a", AnalysisState.CANCELLED, "cancelled by request")
    assert other_gateway.renew_leases(["a"], 30) == set()
    assert other_gateway.claimable_analysis_ids() == []


def test_a_locked_sqlite_database_is_retried_by_the_store_policy(tmp_path: Path) -> None:
    """Another process's write lock outlasting the busy timeout fails a store call ("database is
    locked") unless the ``store`` retry policy waits it out."""
    url = f"sqlite:///{tmp_path}/gateway.db"
    store = Store(url)
    store.migrate()
    # The busy timeout shortened so that the lock below outlasts it (the store's default is 30 s).
    event.listen(store.engine, "connect", lambda conn, _: conn.execute("PRAGMA busy_timeout=50"))
    store.engine.dispose()

    def hold_write_lock(seconds: float) -> threading.Thread:
        locked = threading.Event()

        def hold() -> None:
            other = sqlite3.connect(tmp_path / "gateway.db", isolation_level=None)
            other.execute("BEGIN EXCLUSIVE")
            locked.set()
            time.sleep(seconds)
            other.execute("COMMIT")
            other.close()

        thread = threading.Thread(target=hold)
        thread.start()
        locked.wait()
        return thread

    create = functools.partial(
        store.create_analysis, request_id="", options=AnalysisOptions(), batch_size=2, conversations=convs(2)
    )
    holder = hold_write_lock(0.6)
    with pytest.raises(OperationalError, match="database is locked"):
        create("without-retries")
    holder.join()
    policy = RetryPolicy(max_attempts=20, initial_delay=0.05, max_delay=0.1, multiplier=1.0, jitter=False)
    store.retrier = Retrier("gateway", "store", policy, is_retryable=transient_store_error)
    holder = hold_write_lock(0.6)
    create("with-retries")
    holder.join()
    assert [a.id for a in store.list_analyses(10, None)[0]] == ["with-retries"]
    store.close()


def test_a_restarted_gateway_frees_the_leases_of_dead_processes_of_its_host(store: Store) -> None:
    """Leases of this host's exited gateways are freed at once (no wait for expiry); a live process's,
    or another host's, are not."""
    host = socket.gethostname()[:64]
    child = subprocess.Popen(["true"])  # a process that has exited, and been reaped
    child.wait()
    dead_pid = child.pid
    holders = {
        "dead": f"{host}:{dead_pid}:old",
        "same-pid": f"{host}:{os.getpid()}:before-restart",
        "alive": f"{host}:{os.getppid()}:live",
        "elsewhere": f"another-host:{dead_pid}:remote",
    }
    for analysis_id, owner in holders.items():
        store.create_analysis(
            analysis_id, request_id="", options=AnalysisOptions(), batch_size=2, conversations=convs(2)
        )
        holder = Store(store.url, owner=owner)
        assert holder.claim_analysis(analysis_id, 3600) == 1
        holder.close()
    assert store.release_dead_local_leases() == 2
    assert sorted(store.claimable_analysis_ids()) == ["dead", "same-pid"]
    assert [store.lease_of(a)[0] for a in ("alive", "elsewhere")] == [holders["alive"], holders["elsewhere"]]  # type: ignore[index]


def test_an_expired_lease_is_taken_over_and_fences_the_old_holder(store: Store, other_gateway: Store) -> None:
    store.create_analysis("a", request_id="", options=AnalysisOptions(), batch_size=2, conversations=convs(2))
    assert store.claim_analysis("a", 0.2) == 1
    time.sleep(0.4)  # the holder misses its heartbeat: the lease runs out
    assert other_gateway.claimable_analysis_ids() == ["a"]
    assert other_gateway.claim_analysis("a", 30) == 2
    assert store.claim_analysis("a", 30) is None
    assert store.renew_leases(["a"], 30) == set()
    with pytest.raises(LeaseLost):
        store.save_embeddings_batch("a", 0, 0, packed(2, 2), "m", {})
    assert not store.finish("a", AnalysisState.FAILED, "stale holder", "INTERNAL")
    other_gateway.save_embeddings_batch("a", 0, 0, packed(2, 2), "m", {})
    assert other_gateway.done_batches("a")[Stage.EMBED] == {0}
    running = other_gateway.get_analysis("a")
    assert running is not None and running.state is AnalysisState.RUNNING


def test_finished_and_uploading_analyses_are_not_claimable(store: Store) -> None:
    options = AnalysisOptions()
    store.create_analysis("done", request_id="", options=options, batch_size=2, conversations=convs(1))
    store.create_analysis("uploading", request_id="", options=options, batch_size=2, upload_complete=False)
    store.create_analysis("waiting", request_id="", options=options, batch_size=2, conversations=convs(1))
    assert store.finish("done", AnalysisState.CANCELLED)
    assert store.claimable_analysis_ids() == ["waiting"]
    assert store.claimable_analysis_ids(limit=0) == []
    assert store.claim_analysis("done", 30) is None
    assert store.claim_analysis("uploading", 30) is None
    assert store.claim_analysis("gone", 30) is None
    assert store.lease_of("gone") is None
