"""privacy.redact_stored_text on a real gateway with its real workers: what is stored of the text sent by
CreateAnalysis, UploadAnalysis and AssignConversations, and what the results export of a conversation
withheld by the privacy thresholds."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from briefxai.common.v1 import common_pb2
from briefxai.gateway.v1 import gateway_pb2
from briefxai_gateway.models import ConversationResult, FacetDefinition, FacetType, FacetValue
from briefxai_gateway.redaction import withheld_view

from .conftest import GatewayFactory, GatewayHandle, conversation

pytestmark = pytest.mark.asyncio(loop_scope="session")

SUCCEEDED = gateway_pb2.ANALYSIS_STATE_SUCCEEDED
KEY = "sk-proj-Zq8Xw2Lm5Np7Rt1Vb3Yc6Hd9"
AWS = "AKIAIOSFODNN7EXAMPLE"
EMAIL = "jane.doe@example.com"


def leaky(index: int) -> common_pb2.Conversation:
    """conftest's conversation ``index`` with a key, an AWS key id and an e-mail address in its text."""
    chat = conversation(index)
    chat.messages[0].content = f"{chat.messages[0].content}. My key {KEY} and {AWS} fail, mail {EMAIL}"
    return chat


def stored_text(db: Path) -> str:
    """Every text value of every table of the SQLite store, joined."""
    values: list[str] = []
    with sqlite3.connect(db) as conn:
        tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):  # noqa: S608 - names from sqlite_master
                values.extend(
                    v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                    for v in row
                    if isinstance(v, str | bytes)
                )
    return "\n".join(values)


async def analysed(gw: GatewayHandle, count: int = 30, **options: Any) -> gateway_pb2.Analysis:
    request = gateway_pb2.CreateAnalysisRequest(
        conversations=[leaky(i) for i in range(count)],
        options=gateway_pb2.AnalysisOptions(k=3, seed=7, **options),
    )
    created = (await gw.stub.CreateAnalysis(request)).analysis
    final = (await gw.wait(created.id))[-1].analysis
    assert final.state == SUCCEEDED, final.error.message
    return final


async def results(gw: GatewayHandle, analysis_id: str) -> gateway_pb2.GetAnalysisResultsResponse:
    return await gw.stub.GetAnalysisResults(
        gateway_pb2.GetAnalysisResultsRequest(id=analysis_id, page_size=500)
    )


async def test_secrets_are_redacted_before_they_are_stored(
    start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gw = await start_gateway()
    assert gw.settings.privacy.redact_stored_text == "secrets"
    analysis = await analysed(gw)
    added = [leaky(100), leaky(101)]
    added[0].id, added[1].id = "added-0", "added-1"
    assigned = await gw.stub.AssignConversations(
        gateway_pb2.AssignConversationsRequest(id=analysis.id, conversations=added)
    )
    assert assigned.revision == 1

    async def upload() -> AsyncIterator[gateway_pb2.UploadAnalysisRequest]:
        yield gateway_pb2.UploadAnalysisRequest(
            header=gateway_pb2.UploadHeader(options=gateway_pb2.AnalysisOptions(k=3))
        )
        batch = [leaky(i) for i in range(200, 215)]
        yield gateway_pb2.UploadAnalysisRequest(batch=gateway_pb2.ConversationBatch(conversations=batch))

    uploaded = (await gw.stub.UploadAnalysis(upload())).analysis
    assert (await gw.wait(uploaded.id))[-1].analysis.state == SUCCEEDED
    stored = stored_text(tmp_path / "gateway.db")
    assert KEY not in stored and AWS not in stored
    assert stored.count("[SECRET]") >= 2 * (30 + 2 + 15)  # every stored copy of both keys
    assert EMAIL in stored  # personal data is kept unless redact_stored_text is "all"
    for page in (await results(gw, analysis.id), await results(gw, uploaded.id)):
        exported = str(page)
        assert KEY not in exported and AWS not in exported


async def test_all_redacts_personal_data_too_and_off_keeps_the_text(
    start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gw = await start_gateway(privacy={"redact_stored_text": "all"})
    await analysed(gw, count=12)
    stored = stored_text(tmp_path / "gateway.db")
    assert KEY not in stored and EMAIL not in stored and "[EMAIL]" in stored
    await gw.stop()
    off = await start_gateway(store_url=f"sqlite:///{tmp_path}/off.db", privacy={"redact_stored_text": "off"})
    await analysed(off, count=12)
    assert KEY in stored_text(tmp_path / "off.db")


async def test_withheld_conversations_export_no_text(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway()
    # 7 users in all: no cluster can have 8 distinct users, so every conversation is withheld.
    analysis = await analysed(gw, count=21, min_distinct_users=8)
    page = await results(gw, analysis.id)
    assert page.withheld_conversations == 21 and all(r.withheld for r in page.conversations)
    for row in page.conversations:
        facets = {f.facet: f for f in row.facets}
        assert "request" not in facets
        assert {"task", "language", "sentiment"} <= facets.keys()
        assert all(not f.reason for f in row.facets)
    assert "case 3" not in str(page)  # the conversations' own words
    assert not page.clusters


async def test_withheld_view_keeps_reported_conversations_whole() -> None:
    definitions: Sequence[FacetDefinition] = [
        FacetDefinition("request", FacetType.TEXT),
        FacetDefinition("task", FacetType.ENUM, choices=("coding", "other")),
        FacetDefinition("language", FacetType.TEXT),
        FacetDefinition("concerning", FacetType.NUMBER, 1, 5),
        FacetDefinition("summary_of_issue", FacetType.TEXT),
    ]
    facets = [
        FacetValue("request", text="Reset my canary password"),
        FacetValue("task", text="coding", reason="writes canary code"),
        FacetValue("language", text="en"),
        FacetValue("concerning", number=1.0, reason="canary"),
        FacetValue("summary_of_issue", text="canary"),
        FacetValue("summary_of_issue", failed=True, error="no provider"),
    ]
    reported = ConversationResult("a", list(facets), "L0-0", False, (0.0, 0.0))
    withheld = ConversationResult("b", list(facets), "", True, None)
    shown, hidden = withheld_view([reported, withheld], definitions)
    assert shown == reported
    assert [(v.facet, v.text, v.number, v.reason) for v in hidden.facets] == [
        ("task", "coding", None, ""),
        ("language", "en", None, ""),
        ("concerning", None, 1.0, ""),
        ("summary_of_issue", None, None, ""),
    ]
