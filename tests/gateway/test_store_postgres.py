"""The store on a real PostgreSQL server (``tests/support/postgres.py``), where it differs from SQLite:
the URL forms users write, gateways migrating one database at once, and claims racing on row locks.

Everything else the store does is tested on both databases in ``test_store.py``.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

import pytest
from alembic.migration import MigrationContext

from briefxai_gateway.models import AnalysisOptions, Conversation, Message
from briefxai_gateway.store import Store

if TYPE_CHECKING:
    from tests.support.postgres import PostgresServer

pytest_plugins = ["tests.support.postgres"]
T = TypeVar("T")


def conversations(n: int) -> list[Conversation]:
    return [
        Conversation(f"c{i}", f"u{i}", [Message("user", f"question {i} über Ünïcödé")], {}) for i in range(n)
    ]


def together(count: int, work: Callable[[int], T]) -> list[T]:
    """``work(0..count-1)`` in ``count`` threads released at the same moment."""
    barrier = threading.Barrier(count)

    def run(index: int) -> T:
        barrier.wait()
        return work(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


@pytest.fixture
def stores(postgres_url: str) -> Iterator[list[Store]]:
    """Six stores on one new database: six gateways, each its own lease owner."""
    opened = [Store(postgres_url) for _ in range(6)]
    yield opened
    for store in opened:
        store.close()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_the_url_forms_users_write_use_psycopg_3(
    postgres_server: PostgresServer, postgres_url: str, scheme: str
) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    store = Store(postgres_server.url(database, driver=scheme))
    try:
        assert (store.dialect, store.engine.dialect.driver) == ("postgresql", "psycopg")
        store.migrate()
        store.create_analysis(
            "a", request_id="r", options=AnalysisOptions(), batch_size=2, conversations=conversations(2)
        )
        created = store.get_analysis("a")
        assert created is not None and created.conversation_count == 2
        assert store.load_conversations("a", 0, 2)[1].messages[0].content == "question 1 über Ünïcödé"
    finally:
        store.close()


# A gateway's startup migration, in a process of its own: it says "ready" once imported, migrates on "go".
MIGRATE = """
import sys
from briefxai_gateway.store import Store
store = Store(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
store.migrate()
store.close()
"""


def test_gateways_starting_at_once_migrate_the_database_once(postgres_url: str) -> None:
    """Three gateway processes migrate one empty database at the same moment: each waits for the one
    migrating (an advisory lock), then finds the schema at head. Without the lock all but one fail on
    the tables the first created."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE, postgres_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        for process in processes:
            assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outcomes = [(process.wait(120), process.communicate()[1]) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert [code for code, _ in outcomes] == [0, 0, 0], [err[-1500:] for _, err in outcomes]
    store = Store(postgres_url)
    try:
        with store.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == "0006"
    finally:
        store.close()


def test_racing_claims_give_each_analysis_to_exactly_one_gateway(stores: list[Store]) -> None:
    """Six gateways claim the same twelve analyses in the same order at the same moment: each analysis
    goes to exactly one of them (claimed once: attempts 1), whatever the interleaving on its row lock."""
    stores[0].migrate()
    ids = [f"a{i}" for i in range(12)]
    for analysis_id in ids:
        stores[0].create_analysis(
            analysis_id,
            request_id="",
            options=AnalysisOptions(),
            batch_size=2,
            conversations=conversations(1),
        )

    def claim_all(index: int) -> list[str]:
        return [a for a in ids if stores[index].claim_analysis(a, 30) is not None]

    wins = together(len(stores), claim_all)
    claims = Counter(analysis_id for won in wins for analysis_id in won)
    assert claims == Counter(ids), wins
    for index, won in enumerate(wins):
        for analysis_id in won:
            owner, _, attempts = stores[0].lease_of(analysis_id) or (None, None, 0)
            assert (owner, attempts) == (stores[index].owner, 1)
    assert stores[0].claimable_analysis_ids() == []
