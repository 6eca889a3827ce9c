"""``briefxai assign``'s summary table from hand-made answers, and its usage errors (against a real gateway:
tests/gateway/test_assign.py)."""

from __future__ import annotations

from click.testing import CliRunner
from rich.console import Console

from briefxai.common.v1 import common_pb2
from briefxai.gateway.v1 import gateway_pb2
from briefxai_cli import render
from briefxai_cli.main import cli
from briefxai_cli.supervisor import free_ports


def cluster(cid: str, name: str, size: int, parent: str = "") -> gateway_pb2.ClusterResult:
    return gateway_pb2.ClusterResult(
        cluster=common_pb2.Cluster(id=cid, name=name, size=size, parent_id=parent, level=0 if parent else 1)
    )


def test_assigned_per_top_level_cluster() -> None:
    page = gateway_pb2.GetAnalysisResultsResponse(
        clusters=[
            cluster("L1-0", "Accounts", 40),
            cluster("L1-1", "Cooking", 31),
            cluster("L0-0", "Passwords", 25, "L1-0"),
            cluster("L0-1", "Billing", 15, "L1-0"),
            cluster("L0-2", "Cakes", 31, "L1-1"),
        ],
        total_conversations=80,
        withheld_conversations=3,
        unassigned_conversations=1,
        revision=2,
    )
    response = gateway_pb2.AssignConversationsResponse(
        revision=2,
        assignments=[
            gateway_pb2.ConversationAssignment(conversation_id="a", cluster_id="L0-0", distance=0.1),
            gateway_pb2.ConversationAssignment(conversation_id="b", cluster_id="L0-1", distance=0.2),
            gateway_pb2.ConversationAssignment(
                conversation_id="c", cluster_id="L0-1", distance=0.2, withheld=True
            ),
            gateway_pb2.ConversationAssignment(conversation_id="d", distance=0.9, unassigned=True),
        ],
        max_distance=0.45,
        assigned_count=3,
        unassigned_count=1,
        withheld_count=1,
        released_count=2,
    )
    console = Console(width=400, record=True)
    console.print(render.assignment_summary(response, page))
    text = console.export_text()
    rows = {
        line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:5]]
        for line in text.splitlines()
        if "[L1-" in line
    }
    assert rows == {"Accounts [L1-0]": ["3", "1", "40"], "Cooking [L1-1]": ["0", "0", "31"]}
    assert list(rows) == ["Accounts [L1-0]", "Cooking [L1-1]"]  # most assigned first
    assert "results revision 2: 3 assigned, 1 unassigned (farther than 0.450 from every base cluster)" in text
    assert "1 of the assigned withheld" in text and "2 withheld earlier now reported" in text
    assert "the revision: 80 conversations, 3 withheld, 1 unassigned" in text


def test_usage_and_connection_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "new.jsonl"
    path.write_text('{"id": "n1", "messages": [{"role": "user", "content": "hello"}]}\n')
    gateway = f"127.0.0.1:{free_ports(1)[0]}"
    result = CliRunner().invoke(cli, ["assign", "abc", str(tmp_path / "missing.jsonl"), "--gateway", gateway])
    assert result.exit_code == 2
    result = CliRunner().invoke(cli, ["assign", "abc", str(path), "--gateway", gateway])
    assert result.exit_code == 1 and "error: UNAVAILABLE" in result.stderr
