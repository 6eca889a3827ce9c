"""Get / List / Watch / Cancel / Delete against the real services, through the stubs and the CLI."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from briefxai.common.v1 import common_pb2
from briefxai.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from briefxai_cli.client import GatewayClient, build_options, describe_rpc_error
from briefxai_cli.inputs import ConversationRecord, Message
from briefxai_cli.supervisor import Suite
from tests.e2e.support import generated, rows_mentioning, run_cli
from tests.support.errors import field_violations

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]
TERMINAL = {
    gateway_pb2.ANALYSIS_STATE_SUCCEEDED,
    gateway_pb2.ANALYSIS_STATE_FAILED,
    gateway_pb2.ANALYSIS_STATE_CANCELLED,
}


@pytest.fixture(scope="module")
def finished(client: GatewayClient) -> gateway_pb2.Analysis:
    """A small analysis that has SUCCEEDED."""
    analysis = client.create(generated(80, 1), build_options(seed=3, display_name="small"))
    final = client.wait(analysis.id)
    assert final.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, final.error
    return final


def rpc_error(call: Callable[[], object]) -> grpc.Call:
    """The error a call fails with (the test fails if it succeeds)."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert isinstance(info.value, grpc.Call)
    return info.value


def test_get_returns_the_analysis(client: GatewayClient, finished: gateway_pb2.Analysis) -> None:
    analysis = client.get(finished.id)
    assert analysis.id == finished.id and not analysis.HasField("error")
    assert analysis.conversation_count == 80
    assert analysis.options.display_name == "small"
    assert client.get(f"analyses/{finished.id}").id == finished.id
    assert all(stage.done == stage.total for stage in analysis.stages)


def test_unknown_ids_are_not_found(stub: gateway_pb2_grpc.AnalysisServiceStub, suite: Suite) -> None:
    for call in (
        lambda: stub.GetAnalysis(gateway_pb2.GetAnalysisRequest(id="no-such-analysis")),
        lambda: stub.CancelAnalysis(gateway_pb2.CancelAnalysisRequest(id="no-such-analysis")),
        lambda: stub.DeleteAnalysis(gateway_pb2.DeleteAnalysisRequest(id="no-such-analysis")),
        lambda: list(stub.WatchAnalysis(gateway_pb2.WatchAnalysisRequest(id="no-such-analysis"))),
    ):
        assert rpc_error(call).code() == grpc.StatusCode.NOT_FOUND
    completed = run_cli(
        "status", "no-such-analysis", "--gateway", suite.gateway_address, data_dir=suite.plan.data_dir
    )
    assert completed.returncode == 1
    assert (
        completed.stderr.startswith("error: NOT_FOUND:") and len(completed.stderr.strip().splitlines()) == 1
    )


def test_invalid_requests_carry_field_violations(stub: gateway_pb2_grpc.AnalysisServiceStub) -> None:
    request = gateway_pb2.CreateAnalysisRequest(
        conversations=[
            common_pb2.Conversation(
                id="a", messages=[common_pb2.Message(role=common_pb2.ROLE_USER, content="hi")]
            ),
            common_pb2.Conversation(id="b"),
        ],
        options=gateway_pb2.AnalysisOptions(k=100000),
    )
    error = rpc_error(lambda: stub.CreateAnalysis(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = {field for field, _ in field_violations(error)}
    assert {"conversations[1].messages", "options.k"} <= fields
    records = [
        ConversationRecord("a", "", (Message("user", "hi"),), {}, 4),
        ConversationRecord("b", "", (), {}, 9),
    ]
    line = describe_rpc_error(error, records)
    assert line.startswith("INVALID_ARGUMENT:")
    assert "conversations[1].messages (line 9, id 'b')" in line and "options.k" in line


def test_list_is_newest_first_and_pages_cover_everything(
    client: GatewayClient,
    stub: gateway_pb2_grpc.AnalysisServiceStub,
    finished: gateway_pb2.Analysis,
    suite: Suite,
) -> None:
    newer = client.create(generated(30, 2), build_options(seed=1, display_name="newer"))
    client.wait(newer.id)
    ids = [a.id for a in client.list(page_size=100)]
    assert ids.index(newer.id) < ids.index(finished.id)
    paged: list[str] = []
    token = ""
    while True:
        page = stub.ListAnalyses(gateway_pb2.ListAnalysesRequest(page_size=1, page_token=token))
        assert len(page.analyses) <= 1
        paged += [a.id for a in page.analyses]
        token = page.next_page_token
        if not token:
            break
    assert paged == ids
    completed = run_cli("list", "--json", "--gateway", suite.gateway_address, data_dir=suite.plan.data_dir)
    assert completed.returncode == 0, completed.stderr
    assert [json.loads(line)["id"] for line in completed.stdout.splitlines()] == ids


def test_create_is_idempotent_on_request_id(client: GatewayClient) -> None:
    request_id = str(uuid.uuid4())
    records = generated(20, 5)
    first = client.create(records, build_options(seed=2), request_id=request_id)
    again = client.create(records, build_options(seed=2), request_id=request_id)
    assert again.id == first.id
    assert client.wait(first.id).state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED


def test_watch_streams_progress_until_terminal(client: GatewayClient) -> None:
    analysis = client.create(generated(120, 6), build_options(seed=4))
    updates = list(client.watch(analysis.id))
    assert updates, "no progress updates"
    assert updates[-1].analysis.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED
    assert all(u.analysis.state not in TERMINAL for u in updates[:-1])
    done: dict[int, int] = {}
    for update in updates:
        assert update.analysis.id == analysis.id
        for stage in update.analysis.stages:
            assert stage.total == 0 or stage.done <= stage.total
            assert stage.done >= done.get(stage.stage, 0), "progress went backwards"
            done[stage.stage] = stage.done
    # Watching a finished analysis yields its final state once.
    assert [u.analysis.state for u in client.watch(analysis.id)] == [gateway_pb2.ANALYSIS_STATE_SUCCEEDED]


def test_cancel_stops_a_running_analysis(client: GatewayClient, suite: Suite) -> None:
    analysis = client.create(generated(4000, 8), build_options(seed=5), stream=True)
    cancelled = client.cancel(analysis.id)
    assert cancelled.state == gateway_pb2.ANALYSIS_STATE_CANCELLED
    assert [u.analysis.state for u in client.watch(analysis.id)][-1] == gateway_pb2.ANALYSIS_STATE_CANCELLED
    assert client.cancel(analysis.id).state == gateway_pb2.ANALYSIS_STATE_CANCELLED  # terminal: unchanged
    error = rpc_error(lambda: client.results(analysis.id))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    completed = run_cli(
        "results", analysis.id, "--gateway", suite.gateway_address, data_dir=suite.plan.data_dir
    )
    assert completed.returncode == 1 and completed.stderr.startswith("error: FAILED_PRECONDITION")
    completed = run_cli(
        "cancel", analysis.id, "--gateway", suite.gateway_address, data_dir=suite.plan.data_dir
    )
    assert completed.returncode == 0 and "CANCELLED" in completed.stdout


def test_cli_status_and_results(suite: Suite, finished: gateway_pb2.Analysis, tmp_path: Path) -> None:
    completed = run_cli(
        "status", finished.id, "--json", "--gateway", suite.gateway_address, data_dir=suite.plan.data_dir
    )
    assert completed.returncode == 0, completed.stderr
    status = json.loads(completed.stdout)
    assert status["id"] == finished.id and status["state"] == "ANALYSIS_STATE_SUCCEEDED"
    completed = run_cli(
        "status", finished.id, "--gateway", suite.gateway_address, data_dir=suite.plan.data_dir
    )
    assert completed.returncode == 0 and "SUCCEEDED" in completed.stdout
    completed = run_cli(
        "results",
        finished.id,
        "--out",
        str(tmp_path),
        "--gateway",
        suite.gateway_address,
        data_dir=suite.plan.data_dir,
    )
    assert completed.returncode == 0, completed.stderr
    results = json.loads((tmp_path / "analysis.json").read_text())
    assert results["analysis"]["id"] == finished.id
    assert len(results["conversations"]) == 80


def test_delete_leaves_no_rows_behind(client: GatewayClient, suite: Suite) -> None:
    store = suite.plan.store_path
    assert store is not None and store.exists()
    analysis = client.create(generated(40, 9), build_options(seed=6))
    assert client.wait(analysis.id).state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED
    before = rows_mentioning(store, analysis.id)
    assert {"analyses", "conversations", "clusters"} <= set(before), before

    completed = run_cli(
        "delete", analysis.id, "--gateway", suite.gateway_address, data_dir=suite.plan.data_dir
    )
    assert completed.returncode == 0, completed.stderr
    assert f"deleted analysis {analysis.id}" in completed.stdout
    # Only the audit trail remembers it: its creation, deletion, reads (append-only, by design).
    remaining = rows_mentioning(store, analysis.id)
    assert set(remaining) <= {"audit_log"}, remaining
    error = rpc_error(lambda: client.get(analysis.id))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert analysis.id not in [a.id for a in client.list()]
    completed = run_cli(
        "delete", analysis.id, "--gateway", suite.gateway_address, data_dir=suite.plan.data_dir
    )
    assert completed.returncode == 1 and completed.stderr.startswith("error: NOT_FOUND")


def test_delete_of_a_running_analysis_stops_it_and_removes_it(client: GatewayClient, suite: Suite) -> None:
    store = suite.plan.store_path
    assert store is not None
    analysis = client.create(generated(3000, 10), build_options(seed=7), stream=True)
    assert rows_mentioning(store, analysis.id)
    client.delete(analysis.id)
    remaining = rows_mentioning(store, analysis.id)
    assert set(remaining) <= {"audit_log"}, remaining  # the append-only audit trail remembers it
    assert rpc_error(lambda: client.get(analysis.id)).code() == grpc.StatusCode.NOT_FOUND
