"""The sample analysed end to end through the real CLI and through the stubs, against real services."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import json_format

from briefxai.gateway.v1 import gateway_pb2
from briefxai_cli import evaluation
from briefxai_cli.client import GatewayClient, build_options, to_json
from briefxai_cli.inputs import ConversationRecord, read_conversations
from briefxai_cli.supervisor import Suite
from tests.e2e.checks import check_complete_results
from tests.e2e.support import BAD_RECORDS, SAMPLE, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]
SEED = 7


@pytest.fixture(scope="module")
def records() -> list[ConversationRecord]:
    result = read_conversations(SAMPLE)
    assert not result.errors and len(result.records) == 400
    return result.records


@pytest.fixture(scope="module")
def cli_run(suite: Suite, tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    out_dir = tmp_path_factory.mktemp("cli-out")
    completed = run_cli(
        "analyze",
        str(SAMPLE),
        "--out",
        str(out_dir),
        "--seed",
        str(SEED),
        "--gateway",
        suite.gateway_address,
        data_dir=suite.plan.data_dir,
    )
    return completed, out_dir


def load_results(path: Path) -> gateway_pb2.GetAnalysisResultsResponse:
    return json_format.ParseDict(json.loads(path.read_text()), gateway_pb2.GetAnalysisResultsResponse())


def test_cli_analyze_writes_complete_results_and_prints_the_tree(
    cli_run: tuple[object, Path], records: list[ConversationRecord]
) -> None:
    completed, out_dir = cli_run
    assert completed.returncode == 0, completed.stderr  # type: ignore[attr-defined]
    path = out_dir / "analysis.json"
    assert path.exists()
    results = load_results(path)
    assert results.analysis.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED
    assert results.analysis.options.seed == SEED
    check_complete_results(results, records)
    stdout: str = completed.stdout  # type: ignore[attr-defined]
    assert f"results: {path}" in stdout
    assert "400 conversations" in stdout
    for item in results.clusters:
        if not item.cluster.parent_id:
            assert item.cluster.name in stdout and f"{item.cluster.size} conv" in stdout
    assert "read 400 records" in completed.stderr  # type: ignore[attr-defined]


def test_streamed_upload_with_the_same_seed_gives_the_same_results(
    client: GatewayClient, cli_run: tuple[object, Path], records: list[ConversationRecord]
) -> None:
    analysis = client.create(records, build_options(seed=SEED), stream=True)
    final = client.wait(analysis.id)
    assert final.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, final.error
    streamed = client.results(final.id, page_size=37)
    check_complete_results(streamed, records)

    first = load_results(cli_run[1] / "analysis.json")
    assert first.analysis.id != streamed.analysis.id
    comparison = evaluation.compare_runs(
        evaluation.from_results(to_json(first)), evaluation.from_results(to_json(streamed))
    )
    assert comparison.identical, comparison
    assert [to_json(c) for c in first.clusters] == [to_json(c) for c in streamed.clusters]
    by_id = {row.conversation_id: to_json(row) for row in first.conversations}
    assert {row.conversation_id: to_json(row) for row in streamed.conversations} == by_id
    assert (first.k, first.k_rule) == (streamed.k, streamed.k_rule)


def test_bad_records_are_reported_with_line_numbers_and_the_rest_analysed(
    suite: Suite, tmp_path: Path
) -> None:
    completed = run_cli(
        "analyze",
        str(BAD_RECORDS),
        "--out",
        str(tmp_path),
        "--gateway",
        suite.gateway_address,
        data_dir=suite.plan.data_dir,
    )
    expected = {
        2: "invalid JSON",
        3: "messages: is missing",
        4: "messages[0].role: must be one of",
        6: "messages: is empty",
        7: "must be a JSON object",
        8: "messages[0].content: must be a string",
        9: "duplicate id, first seen on line 1",
        12: "metadata: must be an object",
        13: "id: is empty",
    }
    for line, text in expected.items():
        matching = [ln for ln in completed.stderr.splitlines() if ln.startswith(f"input error: line {line}")]
        assert matching and text in matching[0], (line, completed.stderr)
    assert "3 accepted, 9 rejected" in completed.stderr
    assert "analysis " in completed.stderr and "created: 3 conversations" in completed.stderr
    errors = json.loads((tmp_path / "input_errors.json").read_text())
    assert sorted({e["line"] for e in errors}) == sorted(expected)
    assert completed.returncode == 0, completed.stderr
    results = load_results(tmp_path / "analysis.json")
    assert sorted(row.conversation_id for row in results.conversations) == ["good-1", "good-2", "good-3"]


def test_eval_reports_agreement_per_level_and_determinism(suite: Suite, tmp_path: Path) -> None:
    completed = run_cli(
        "eval", str(SAMPLE), "--label-key", "metadata.label", "--seed", str(SEED), "--out", str(tmp_path),
        "--gateway", suite.gateway_address, data_dir=suite.plan.data_dir,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "AMI" in completed.stdout and "ARI" in completed.stdout
    assert "deterministic: the second run with the same seed gave the same partition" in completed.stdout
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["determinism"]["identical"] is True
    assert all(v == pytest.approx(1.0) for v in report["determinism"]["ari_by_level"].values())
    levels = report["levels"]
    assert levels and [lv["level"] for lv in levels] == sorted(lv["level"] for lv in levels)
    assert report["total"] == 400 and report["unlabelled"] == 0
    for level in levels:
        assert level["conversations"] == 400 - report["withheld"]
        assert -1.0 <= level["ari"] <= 1.0 and level["ami"] <= 1.0
        assert f"{level['ami']:.3f}" in completed.stdout
    # Topic labels are recoverable from the sample: far above the ~0 of a random partition.
    assert levels[0]["ami"] > 0.3, levels[0]
