"""AssignConversations on a real gateway with its real facets, embedding and clustering services: new
conversations into a finished analysis as new revisions of its results, the old ones still readable;
the privacy threshold on what each revision adds; idempotency; errors; and ``briefxai assign``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest

from briefxai.common.v1 import common_pb2
from briefxai.gateway.v1 import gateway_pb2
from tests.e2e.support import run_cli
from tests.support.errors import field_violations

from .conftest import TOPICS, GatewayFactory, GatewayHandle, conversations

pytestmark = pytest.mark.asyncio(loop_scope="session")

SUCCEEDED = gateway_pb2.ANALYSIS_STATE_SUCCEEDED
FAR_AWAY = (
    "Which treaty ended the Thirty Years' War in 1648, and how did it reshape the Holy Roman Empire?",
    "The Peace of Westphalia ended it and weakened the emperor.",
)


def chat(cid: str, user: str, question: str, answer: str) -> common_pb2.Conversation:
    return common_pb2.Conversation(
        id=cid,
        user_id=user,
        messages=[
            common_pb2.Message(role=common_pb2.ROLE_USER, content=question),
            common_pb2.Message(role=common_pb2.ROLE_ASSISTANT, content=answer),
        ],
    )


# The questions of each topic the new conversations reuse (with other case numbers). The second
# cooking question is left out: its analysed conversations lie at the edge of their cluster, and with
# 30 members the 99th percentile of the members' distances is about the farthest member's (new copies of
# it lie just past it, at 0.50-0.52 against a threshold of 0.48, and are rightly unassigned).
NEAR = {"passwords": (0, 1, 2, 3), "cooking": (0, 2, 3), "python": (0, 1, 2, 3)}


def on_topic(cid: str, user: str, topic: str, index: int) -> common_pb2.Conversation:
    """A new conversation like the analysed ones on ``topic`` (another case number)."""
    near = NEAR[topic]
    question = TOPICS[topic][near[index % len(near)]]
    return chat(cid, user, f"{question} (case {500 + index})", f"Here is some help about {topic}.")


def far_away(cid: str, user: str) -> common_pb2.Conversation:
    return chat(cid, user, *FAR_AWAY)


async def analysed(gw: GatewayHandle) -> gateway_pb2.Analysis:
    """30 conversations on three topics (10 each, 7 users), k = 3, succeeded."""
    request = gateway_pb2.CreateAnalysisRequest(
        conversations=conversations(30), options=gateway_pb2.AnalysisOptions(k=3, seed=7)
    )
    created = (await gw.stub.CreateAnalysis(request)).analysis
    final = (await gw.wait(created.id))[-1].analysis
    assert final.state == SUCCEEDED, final.error.message
    return final


async def assign(
    gw: GatewayHandle, analysis_id: str, convs: list[common_pb2.Conversation], request_id: str = ""
) -> gateway_pb2.AssignConversationsResponse:
    request = gateway_pb2.AssignConversationsRequest(
        id=analysis_id, conversations=convs, request_id=request_id
    )
    return await gw.stub.AssignConversations(request)


async def results(
    gw: GatewayHandle, analysis_id: str, revision: int | None = None, page_size: int = 1000
) -> gateway_pb2.GetAnalysisResultsResponse:
    """Every page of one revision merged (clusters from the first page)."""
    request = gateway_pb2.GetAnalysisResultsRequest(id=analysis_id, page_size=page_size, revision=revision)
    merged = await gw.stub.GetAnalysisResults(request)
    token = merged.next_page_token
    while token:
        page = await gw.stub.GetAnalysisResults(
            gateway_pb2.GetAnalysisResultsRequest(id=analysis_id, page_size=page_size, page_token=token)
        )
        assert not page.clusters and page.revision == merged.revision
        merged.conversations.extend(page.conversations)
        token = page.next_page_token
    merged.next_page_token = ""
    return merged


def without_analysis(page: gateway_pb2.GetAnalysisResultsResponse) -> gateway_pb2.GetAnalysisResultsResponse:
    """The results without the Analysis they come with (its results_revision and update time move on)."""
    copy = gateway_pb2.GetAnalysisResultsResponse()
    copy.CopyFrom(page)
    copy.ClearField("analysis")
    return copy


def cluster_of_topic(page: gateway_pb2.GetAnalysisResultsResponse) -> dict[str, str]:
    """The base cluster that holds each topic's analysed conversations (conv-i is on topic i % 3)."""
    names = sorted(TOPICS)
    found: dict[str, set[str]] = {}
    for item in page.conversations:
        if item.revision == 0 and item.cluster_id:
            index = int(item.conversation_id.removeprefix("conv-"))
            found.setdefault(names[index % 3], set()).add(item.cluster_id)
    assert all(len(ids) == 1 for ids in found.values()), found
    return {topic: ids.pop() for topic, ids in found.items()}


def clusters_by_id(page: gateway_pb2.GetAnalysisResultsResponse) -> dict[str, gateway_pb2.ClusterResult]:
    return {c.cluster.id: c for c in page.clusters}


def distribution(item: gateway_pb2.ClusterResult, facet: str) -> dict[str, int]:
    return next(dict(d.counts) for d in item.facets if d.facet == facet)


def assert_tree_adds_up(page: gateway_pb2.GetAnalysisResultsResponse) -> None:
    """Every parent holds its children's conversations and distributions."""
    clusters = clusters_by_id(page)
    for item in page.clusters:
        children = [clusters[c] for c in item.cluster.child_ids if c in clusters]
        if not children:
            continue
        assert item.cluster.size == sum(c.cluster.size for c in children)
        task = distribution(item, "task")
        summed: dict[str, int] = {}
        for child in children:
            for label, count in distribution(child, "task").items():
                summed[label] = summed.get(label, 0) + count
        assert {k: v for k, v in task.items() if v} == {k: v for k, v in summed.items() if v}


async def test_new_conversations_make_new_revisions(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway()
    analysis = await analysed(gw)
    assert analysis.results_revision == 0
    original = await results(gw, analysis.id)
    assert original.revision == 0 and original.unassigned_conversations == 0
    topic_cluster = cluster_of_topic(original)
    before = clusters_by_id(original)

    # Six new ones on passwords and on cooking (six users each), two on python (two users: under the
    # thresholds, 5 conversations and 3 users), one on nothing the analysis has seen.
    new = [on_topic(f"new-p{i}", f"p-user-{i}", "passwords", i) for i in range(6)]
    new += [on_topic(f"new-c{i}", f"c-user-{i}", "cooking", i) for i in range(6)]
    new += [on_topic(f"new-y{i}", f"y-user-{i}", "python", i) for i in range(2)]
    new.append(far_away("new-far", "far-user"))
    answer = await assign(gw, analysis.id, new, request_id="first")
    assert answer.revision == 1
    assert [a.conversation_id for a in answer.assignments] == [c.id for c in new]
    by_id = {a.conversation_id: a for a in answer.assignments}
    assert 0 < answer.max_distance < 2
    for conversation in new[:14]:
        item = by_id[conversation.id]
        topic = {"p": "passwords", "c": "cooking", "y": "python"}[conversation.id[4]]
        assert item.cluster_id == topic_cluster[topic], (conversation.id, item)
        assert not item.unassigned and 0 <= item.distance <= answer.max_distance
        assert item.withheld == (topic == "python")
    far = by_id["new-far"]
    assert far.unassigned and far.cluster_id == "" and far.distance > answer.max_distance
    assert (answer.assigned_count, answer.unassigned_count, answer.withheld_count) == (14, 1, 2)
    assert answer.released_count == 0

    got = (await gw.stub.GetAnalysis(gateway_pb2.GetAnalysisRequest(id=analysis.id))).analysis
    assert got.results_revision == 1 and got.conversation_count == 30

    # Revision 1 (the newest, the default): counts and distributions with the released conversations.
    first = await results(gw, analysis.id)
    assert first.revision == 1
    assert first.total_conversations == 45
    assert first.unassigned_conversations == 1
    assert first.withheld_conversations == original.withheld_conversations + 2
    after = clusters_by_id(first)
    assert set(after) == set(before)
    for topic, grown in (("passwords", 6), ("cooking", 6), ("python", 0)):
        cluster_id = topic_cluster[topic]
        old, now = before[cluster_id], after[cluster_id]
        assert now.cluster.size == old.cluster.size + grown
        assert now.cluster.distinct_users == old.cluster.distinct_users + grown  # new users each
        assert (now.cluster.name, now.cluster.parent_id) == (old.cluster.name, old.cluster.parent_id)
        assert sum(distribution(now, "task").values()) == now.cluster.size
        sentiment = next(d for d in now.facets if d.facet == "sentiment")
        assert sum(sentiment.counts.values()) == now.cluster.size
        if not grown:
            assert list(now.facets) == list(old.facets)
    assert_tree_adds_up(first)
    rows = {r.conversation_id: r for r in first.conversations}
    assert [r.conversation_id for r in first.conversations] == [
        r.conversation_id for r in original.conversations
    ] + [c.id for c in new]
    for conversation in new:
        row = rows[conversation.id]
        assert row.revision == 1 and row.HasField("distance") and not row.HasField("point")
        assert row.distance == pytest.approx(by_id[conversation.id].distance)
        assert {"task", "language", "sentiment"} <= {f.facet for f in row.facets}
        assert ("request" in {f.facet for f in row.facets}) is not row.withheld  # withheld: no free text
    assert rows["new-p0"].cluster_id == topic_cluster["passwords"] and not rows["new-p0"].withheld
    assert rows["new-y0"].cluster_id == "" and rows["new-y0"].withheld and not rows["new-y0"].unassigned
    assert rows["new-far"].unassigned and rows["new-far"].cluster_id == "" and not rows["new-far"].withheld

    # Revision 0 reads as it did.
    assert without_analysis(await results(gw, analysis.id, revision=0)) == without_analysis(original)

    # The same request id again: the same answer, no new revision.
    again = await assign(gw, analysis.id, new, request_id="first")
    assert again == answer
    got = (await gw.stub.GetAnalysis(gateway_pb2.GetAnalysisRequest(id=analysis.id))).analysis
    assert got.results_revision == 1

    # A page token keeps its revision while another is written.
    paged = await gw.stub.GetAnalysisResults(
        gateway_pb2.GetAnalysisResultsRequest(id=analysis.id, page_size=20)
    )
    assert paged.revision == 1 and paged.next_page_token

    # Three more on python (three more users): with the two held back they pass and are reported.
    more = [on_topic(f"new-y{i}", f"y-user-{i}", "python", i) for i in range(2, 5)]
    second = await assign(gw, analysis.id, more)
    assert second.revision == 2 and second.released_count == 2 and second.withheld_count == 0
    latest = await results(gw, analysis.id)
    assert latest.revision == 2 and latest.total_conversations == 48
    assert latest.withheld_conversations == original.withheld_conversations
    python = clusters_by_id(latest)[topic_cluster["python"]]
    assert python.cluster.size == before[topic_cluster["python"]].cluster.size + 5
    assert sum(distribution(python, "task").values()) == python.cluster.size
    assert_tree_adds_up(latest)
    released = {r.conversation_id: r for r in latest.conversations}
    assert released["new-y0"].cluster_id == topic_cluster["python"] and released["new-y0"].revision == 1
    # ... while revision 1 still holds them back, and the page begun there continues revision 1.
    assert without_analysis(await results(gw, analysis.id, revision=1)) == without_analysis(first)
    rest = await gw.stub.GetAnalysisResults(
        gateway_pb2.GetAnalysisResultsRequest(id=analysis.id, page_size=100, page_token=paged.next_page_token)
    )
    assert rest.revision == 1 and len(paged.conversations) + len(rest.conversations) == 45

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await gw.stub.GetAnalysisResults(gateway_pb2.GetAnalysisResultsRequest(id=analysis.id, revision=3))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations(error.value)] == ["revision"]

    # The centroids were computed once and stored.
    assert gw.store.load_centroids(analysis.id) is not None
    counts = gw.store.row_counts(analysis.id)
    assert counts["revisions"] == 2 and counts["added_assignments"] == 18
    assert counts["conversations"] == 48 and counts["revision_clusters"] == 2 * len(original.clusters)
    await gw.stub.DeleteAnalysis(gateway_pb2.DeleteAnalysisRequest(id=analysis.id))
    assert set(gw.store.row_counts(analysis.id).values()) == {0}


async def test_assign_errors(start_gateway: GatewayFactory, closed_address: str, tmp_path: Path) -> None:
    gw = await start_gateway()
    analysis = await analysed(gw)

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await assign(gw, "no-such-analysis", [far_away("x", "u")])
    assert error.value.code() == grpc.StatusCode.NOT_FOUND

    bad = [
        on_topic("conv-0003", "u1", "passwords", 0),  # already in the analysis
        chat("dup", "u1", "hello", "hi"),
        chat("dup", "u2", "hello again", "hi"),
        common_pb2.Conversation(
            id="bad-role", messages=[common_pb2.Message(role=common_pb2.ROLE_UNSPECIFIED, content="x")]
        ),
        chat("empty", "u3", " ", "hi"),
    ]
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await assign(gw, analysis.id, bad, request_id="x" * 200)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations(error.value)] == ["request_id"]
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await assign(gw, analysis.id, bad)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = [f for f, _ in field_violations(error.value)]
    assert fields == [
        "conversations[2].id",
        "conversations[3].messages[0].role",
        "conversations[4].messages[0].content",
        "conversations[0].id",
    ]
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await assign(gw, analysis.id, [])
    assert [f for f, _ in field_violations(error.value)] == ["conversations"]
    # Nothing was written.
    got = (await gw.stub.GetAnalysis(gateway_pb2.GetAnalysisRequest(id=analysis.id))).analysis
    assert got.results_revision == 0

    # An analysis that never gets results: its clustering service is down.
    broken = await start_gateway(
        store_url=f"sqlite:///{tmp_path}/broken.db", clustering_address=closed_address
    )
    request = gateway_pb2.CreateAnalysisRequest(conversations=conversations(12))
    pending = (await broken.stub.CreateAnalysis(request)).analysis
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await assign(broken, pending.id, [far_away("x", "u")])
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "SUCCEEDED" in (error.value.details() or "")


async def test_the_cli_assigns_a_file(start_gateway: GatewayFactory, tmp_path: Path) -> None:
    gw = await start_gateway()
    analysis = await analysed(gw)
    path = tmp_path / "new.jsonl"
    lines = []
    for i in range(6):
        lines.append(
            {
                "id": f"cli-{i}",
                "user_id": f"cli-user-{i}",
                "messages": [
                    {"role": "user", "content": on_topic("", "", "cooking", i).messages[0].content},
                    {"role": "assistant", "content": "Here is some help about cooking."},
                ],
            }
        )
    lines.append(
        {
            "id": "cli-far",
            "messages": [
                {"role": "user", "content": FAR_AWAY[0]},
                {"role": "assistant", "content": FAR_AWAY[1]},
            ],
        }
    )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    address = gw.running.address
    base = ("assign", analysis.id, str(path), "--gateway", address)
    shown = await asyncio.to_thread(run_cli, *base, "--request-id", "cli-run", data_dir=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "read 7 records" in shown.stderr
    assert "results revision 1: 6 assigned, 1 unassigned" in shown.stdout
    page = await results(gw, analysis.id)
    cooking = next(c.cluster for c in page.clusters if c.cluster.id == cluster_of_topic(page)["cooking"])
    top = [c.cluster for c in page.clusters if not c.cluster.parent_id]
    assert all(c.name in shown.stdout for c in top)
    row = next(line for line in shown.stdout.splitlines() if cooking.id in line)
    assert [cell.strip() for cell in row.split("│")[2:5]] == ["6", "0", str(cooking.size)], row

    # The same request id: the same answer (here as JSON), no new revision.
    again = await asyncio.to_thread(run_cli, *base, "--request-id", "cli-run", "--json", data_dir=tmp_path)
    assert again.returncode == 0, again.stderr
    data = json.loads(again.stdout)
    assert data["revision"] == 1 and data["assigned_count"] == "6" and data["unassigned_count"] == "1"
    assert [a["conversation_id"] for a in data["assignments"]] == [line["id"] for line in lines]

    # Another request id: the conversations are in the analysis already (named by input line).
    refused = await asyncio.to_thread(run_cli, *base, data_dir=tmp_path)
    assert refused.returncode == 1
    assert "conversations[0].id (line 1, id 'cli-0'): conversation id 'cli-0' is already in the analysis" in (
        refused.stderr
    )
    missing = await asyncio.to_thread(
        run_cli, "assign", "nope", str(path), "--gateway", address, data_dir=tmp_path
    )
    assert missing.returncode == 1 and "error: NOT_FOUND" in missing.stderr


async def test_a_configured_max_distance_replaces_the_percentile_rule(start_gateway: GatewayFactory) -> None:
    gw = await start_gateway(assign_max_distance=1e-9)
    analysis = await analysed(gw)
    answer = await assign(gw, analysis.id, [on_topic("n0", "u1", "passwords", 0)])
    assert answer.max_distance == pytest.approx(1e-9)
    assert [(a.unassigned, a.cluster_id) for a in answer.assignments] == [(True, "")]
