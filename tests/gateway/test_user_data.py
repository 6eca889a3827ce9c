"""Erasing and exporting one user's data on a real gateway with its real facets, embedding and clustering
services: after an erasure no table (nor the SQLite files) holds the user's id, conversation ids or
text, the results still page over the holes, the analysis says its results are stale, AssignConversations
still works; a running analysis with the user is cancelled first; other users and other tenants keep
their data; the export holds the user's data and nobody else's."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from briefxai.common.v1 import common_pb2
from briefxai.gateway.v1 import gateway_pb2
from briefxai_common.errors import InvalidArgument
from briefxai_gateway.clients import GrpcEmbeddingClient
from briefxai_gateway.models import AnalysisOptions, AnalysisState, Conversation, Message
from briefxai_gateway.security.principal import tenant_scope
from briefxai_gateway.security.users import UserData
from briefxai_gateway.store.users import ERASED_CANCEL_REASON

from .conftest import TOPICS, GatewayFactory, GatewayHandle, conversation

pytestmark = pytest.mark.asyncio(loop_scope="session")

SUCCEEDED = gateway_pb2.ANALYSIS_STATE_SUCCEEDED
AUTH_OFF: dict[str, Any] = {"auth": {"mode": "off"}}
ERASED_USER = "user-3"
CANARY = "Zorblax-QX7-canary"
STALE_WARNING = "of erased user(s) were deleted after this analysis ran"


def planted(index: int) -> common_pb2.Conversation:
    """conftest's conversation ``index``; the erased user's carry the canary in text and metadata."""
    chat = conversation(index)
    if chat.user_id == ERASED_USER:
        chat.messages[0].content += f" ref {CANARY}"
        chat.metadata["ticket"] = CANARY
    return chat


def new_chat(cid: str, user: str, topic: str, index: int, extra: str = "") -> common_pb2.Conversation:
    """A new conversation like the analysed ones on ``topic``, for AssignConversations."""
    question = f"{TOPICS[topic][0]} (case {500 + index}){extra}"
    return common_pb2.Conversation(
        id=cid,
        user_id=user,
        messages=[
            common_pb2.Message(role=common_pb2.ROLE_USER, content=question),
            common_pb2.Message(role=common_pb2.ROLE_ASSISTANT, content=f"Here is some help about {topic}."),
        ],
    )


async def analysed(gw: GatewayHandle, count: int = 30) -> gateway_pb2.Analysis:
    request = gateway_pb2.CreateAnalysisRequest(
        conversations=[planted(i) for i in range(count)], options=gateway_pb2.AnalysisOptions(k=3, seed=7)
    )
    created = (await gw.stub.CreateAnalysis(request)).analysis
    final = (await gw.wait(created.id))[-1].analysis
    assert final.state == SUCCEEDED, final.error.message
    return final


async def all_pages(gw: GatewayHandle, analysis_id: str, revision: int | None = None) -> list[str]:
    """The conversation ids of every page of the results, 7 at a time."""
    ids: list[str] = []
    token = ""
    while True:
        request = gateway_pb2.GetAnalysisResultsRequest(id=analysis_id, page_size=7, page_token=token)
        if revision is not None and not token:
            request.revision = revision
        page = await gw.stub.GetAnalysisResults(request)
        ids.extend(r.conversation_id for r in page.conversations)
        token = page.next_page_token
        if not token:
            return ids


def rows_holding(db: Path, needles: list[str]) -> list[tuple[str, str]]:
    """(table, needle) for each table of the SQLite store with a text or blob value containing a needle."""
    found: list[tuple[str, str]] = []
    with sqlite3.connect(db) as conn:
        tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):  # noqa: S608 - names from sqlite_master
                for value in row:
                    if isinstance(value, bytes):
                        value = value.decode("utf-8", "replace")
                    if isinstance(value, str):
                        found.extend((table, n) for n in needles if n in value)
    return sorted(set(found))


def on_disk(db: Path, needle: str) -> bool:
    """Whether the database file or its write-ahead log holds ``needle`` anywhere (free pages too)."""
    wal = db.with_name(db.name + "-wal")
    return needle.encode() in db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def embedding_client(gw: GatewayHandle) -> GrpcEmbeddingClient:
    assert gw.gateway.downstreams is not None
    return gw.gateway.downstreams.embedding


def user_data(gw: GatewayHandle) -> UserData:
    return UserData(gw.gateway.manager, embedding_client(gw).clear_cache)


async def test_erase_leaves_nothing_of_the_user_and_the_results_still_read(
    start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gw = await start_gateway(**AUTH_OFF)
    db = tmp_path / "gateway.db"
    analysis = await analysed(gw)
    own = [planted(i) for i in range(30)]
    theirs = [c.id for c in own if c.user_id == ERASED_USER]
    assert len(theirs) == 4
    added = [
        new_chat("added-erased-0", ERASED_USER, "python", 0, f" ref {CANARY}"),
        new_chat("added-erased-1", ERASED_USER, "cooking", 1),
        new_chat("added-other-0", "user-9", "passwords", 2),
        new_chat("added-other-1", "user-9", "python", 3),
    ]
    revision = await gw.stub.AssignConversations(
        gateway_pb2.AssignConversationsRequest(id=analysis.id, conversations=added)
    )
    assert revision.revision == 1
    erased_ids = [*theirs, "added-erased-0", "added-erased-1"]
    kept_ids = sorted({c.id for c in own} - set(theirs) | {"added-other-0", "added-other-1"})
    # Another tenant's analysis with the same user id is not this tenant's to erase.
    with tenant_scope("other-tenant"):
        gw.store.create_analysis(
            "other-tenant-analysis",
            request_id="",
            options=AnalysisOptions(),
            batch_size=8,
            conversations=[
                Conversation("other-conv", ERASED_USER, [Message("user", "hello from another tenant")])
            ],
        )
        gw.store.finish("other-tenant-analysis", AnalysisState.CANCELLED, "kept for the test")

    needles = [ERASED_USER, CANARY, *erased_ids]
    before = rows_holding(db, needles)
    assert {table for table, _ in before} >= {"conversations", "facet_values"}
    assert on_disk(db, CANARY)

    data = user_data(gw)
    exported = await data.export(ERASED_USER)
    [entry] = exported["analyses"]
    assert exported["user_id"] == ERASED_USER and entry["analysis_id"] == analysis.id
    by_id = {c["conversation_id"]: c for c in entry["conversations"]}
    assert sorted(by_id) == sorted(erased_ids)
    assert all(CANARY in c["messages"][0]["content"] for cid, c in by_id.items() if cid != "added-erased-1")
    assert by_id[theirs[0]]["metadata"]["ticket"] == CANARY
    assert all(c["facets"] for c in by_id.values())
    assert by_id["added-erased-0"]["result"]["added_in_revision"] == 1
    reported = [c for cid, c in by_id.items() if cid in theirs and not c["result"]["withheld"]]
    assert reported and all(c["result"]["clusters"][0]["name"] for c in reported)
    text = json.dumps(exported)
    others = [c for c in own if c.user_id != ERASED_USER]
    assert not [c.id for c in others if c.id in text] and not [c.user_id for c in others if c.user_id in text]
    assert "added-other" not in text and "user-9" not in text and "other-conv" not in text

    outcome = await data.erase(ERASED_USER)
    assert outcome.stale_analysis_ids == [analysis.id]
    assert outcome.cancelled_analysis_ids == []
    assert outcome.caches_cleared == ["assigner", "embedding"]
    assert outcome.deleted_rows == {
        "facet_values": 6,
        "assignments": 4,
        "added_assignments": 2,
        "conversations": 6,
        "embeddings": 4,
        "assignment_centroids": 1,
    }

    # Nothing of the user is left in this tenant: no row, and no byte in the database's files.
    assert rows_holding(db, needles) == [("conversations", ERASED_USER)]
    with tenant_scope("other-tenant"):
        assert gw.store.user_analyses(ERASED_USER) == {"other-tenant-analysis": AnalysisState.CANCELLED}
        gw.store.delete_analysis("other-tenant-analysis")
    assert rows_holding(db, needles) == []
    assert not on_disk(db, CANARY)
    # The embedding service the gateway calls holds nothing any more (its gauge is process-wide: other
    # embedding services of the test session set it too, so ask the service itself).
    assert await embedding_client(gw).clear_cache() == 0

    # The analysis says its results are stale; they still read, page by page over the holes.
    got = (await gw.stub.GetAnalysis(gateway_pb2.GetAnalysisRequest(id=analysis.id))).analysis
    assert got.state == SUCCEEDED
    assert any(STALE_WARNING in w and w.startswith("6 conversation(s)") for w in got.warnings)
    for rev in (0, 1, None):
        ids = await all_pages(gw, analysis.id, rev)
        expected = [i for i in kept_ids if not i.startswith("added")] if rev == 0 else kept_ids
        assert sorted(ids) == expected and len(ids) == len(set(ids))
    assert (await data.export(ERASED_USER))["analyses"] == []

    # New conversations still go in (the centroids are computed again without the user's vectors).
    more = await gw.stub.AssignConversations(
        gateway_pb2.AssignConversationsRequest(
            id=analysis.id, conversations=[new_chat("added-later", "user-8", "passwords", 4)]
        )
    )
    assert more.revision == 2 and more.assignments[0].cluster_id

    again = await data.erase(ERASED_USER)
    assert again.stale_analysis_ids == [] and not any(again.deleted_rows.values())


async def test_a_running_analysis_of_the_user_is_cancelled_before_the_erasure(
    start_gateway: GatewayFactory, closed_address: str, tmp_path: Path
) -> None:
    """With the clustering service down the analysis waits, RUNNING, its facets and vectors stored."""
    gw = await start_gateway(
        **AUTH_OFF,
        clustering_address=closed_address,
        outage_budget_seconds=600,
        retry_policies={"clustering": {"max_attempts": 2, "initial_delay_ms": 10, "max_delay_ms": 50}},
        circuit_breakers={"clustering": {"failure_threshold": 2, "open_timeout_ms": 300}},
    )
    request = gateway_pb2.CreateAnalysisRequest(
        conversations=[planted(i) for i in range(16)], options=gateway_pb2.AnalysisOptions(k=3, seed=7)
    )
    created = (await gw.stub.CreateAnalysis(request)).analysis
    await gw.wait_until(
        created.id, lambda u: any(w.startswith("waiting for the clustering") for w in u.analysis.warnings)
    )

    outcome = await user_data(gw).erase(ERASED_USER)
    assert outcome.cancelled_analysis_ids == [created.id]
    assert outcome.stale_analysis_ids == [created.id]
    assert outcome.deleted_rows["conversations"] == 2 and outcome.deleted_rows["facet_values"] == 2
    assert outcome.deleted_rows["embeddings"] == 2
    final = (await gw.wait(created.id))[-1].analysis
    assert final.state == gateway_pb2.ANALYSIS_STATE_CANCELLED
    assert final.error.message == ERASED_CANCEL_REASON
    assert rows_holding(tmp_path / "gateway.db", [ERASED_USER, CANARY]) == []
    assert gw.gateway.manager.running_count == 0


async def test_user_ids_are_checked(start_gateway: GatewayFactory) -> None:
    data = user_data(await start_gateway(**AUTH_OFF))
    for bad in ("", "   ", "u" * 257):
        with pytest.raises(InvalidArgument):
            await data.erase(bad)
        with pytest.raises(InvalidArgument):
            await data.export(bad)
    assert (await data.export("nobody"))["analyses"] == []
    nothing = await data.erase("nobody")
    assert nothing.stale_analysis_ids == [] and not any(nothing.deleted_rows.values())
