"""The CLI without a gateway: input errors, connection errors, the sample command."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

import briefxai_sampledata as sampledata
from briefxai_cli.main import cli
from briefxai_cli.supervisor import free_ports

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def closed_gateway() -> str:
    return f"127.0.0.1:{free_ports(1)[0]}"


def test_input_errors_are_listed_before_the_connection_error() -> None:
    result = CliRunner().invoke(
        cli, ["analyze", str(EXAMPLES / "bad_records.jsonl"), "--gateway", closed_gateway()]
    )
    assert result.exit_code == 1
    for line in (2, 3, 4, 6, 7, 8, 9, 12, 13):
        assert f"input error: line {line}" in result.stderr
    assert "12 records" in result.stderr and "3 accepted, 9 rejected" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: UNAVAILABLE:") and "briefxai up" in last


def test_strict_sends_nothing_when_a_record_is_bad() -> None:
    result = CliRunner().invoke(
        cli, ["analyze", str(EXAMPLES / "bad_records.jsonl"), "--strict", "--gateway", closed_gateway()]
    )
    assert result.exit_code == 1
    assert "9 invalid records and --strict is set; nothing was sent" in result.stderr


def test_a_file_without_valid_records_fails(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a"}\nnot json\n')
    result = CliRunner().invoke(cli, ["analyze", str(path), "--gateway", closed_gateway()])
    assert result.exit_code == 1
    assert f"error: no valid conversations in {path}" in result.stderr


def test_management_commands_report_one_line_on_connection_failure() -> None:
    gateway = closed_gateway()
    for args in (["status", "x"], ["list"], ["cancel", "x"], ["delete", "x"], ["results", "x"]):
        result = CliRunner().invoke(cli, [*args, "--gateway", gateway])
        assert result.exit_code == 1, args
        assert result.stderr.startswith("error: UNAVAILABLE"), args
        assert len(result.stderr.strip().splitlines()) == 1, args


def test_gateway_address_from_environment() -> None:
    result = CliRunner(env={"BRIEFXAI_CLI_GATEWAY": closed_gateway()}).invoke(cli, ["list"])
    assert result.exit_code == 1 and "UNAVAILABLE" in result.stderr


def test_sample_command_is_deterministic() -> None:
    result = CliRunner().invoke(cli, ["sample", "--n", "5", "--seed", "3"])
    assert result.exit_code == 0
    assert [json.loads(line) for line in result.stdout.splitlines()] == sampledata.generate(5, 3)


def test_usage_errors_exit_2() -> None:
    result = CliRunner().invoke(cli, ["analyze", "missing-file.jsonl"])
    assert result.exit_code == 2
    result = CliRunner().invoke(cli, ["analyze", str(EXAMPLES / "bad_records.jsonl"), "--embed-text", "nope"])
    assert result.exit_code == 2
