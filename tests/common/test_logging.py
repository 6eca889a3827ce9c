"""Log lines are JSON with service, level, trace and bound ids; secrets and personal data never reach
them; file output rotates."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider

from briefxai_common.logging import configure_logging, get_logger, reset_logging


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    reset_logging()


def last_record(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    return record


def test_json_lines_redact_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("unit", "info", "json")
    log = get_logger("test")
    log.info("calling provider", api_key="sk-live-1234567890abcdef", note="header Bearer abcdefghijklmnop")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["event"] == "calling provider"
    assert record["service"] == "unit"
    assert record["level"] == "info"
    assert record["api_key"] == "[REDACTED]"
    assert "abcdefghijklmnop" not in line
    assert "sk-live" not in line


def test_counts_named_like_tokens_are_not_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("unit", "info", "json")
    get_logger("test").info("model loaded", max_tokens=256, access_token="abc123", client_secret="x")
    record = last_record(capsys)
    assert record["max_tokens"] == 256
    assert record["access_token"] == "[REDACTED]"
    assert record["client_secret"] == "[REDACTED]"


def test_personal_data_in_free_text_is_redacted_but_ids_and_addresses_are_kept(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("unit", "info", "json")
    get_logger("test").warning(
        "provider answered",
        error="user jane.doe@example.com called +1 415 555 2671 and paid with 4111 1111 1111 1111; my name is Jane Doe",
        analysis_id="20261203123456789",
        address="127.0.0.1:50052",
        store_url="postgresql+psycopg://briefxai:hunter2@db.internal:5432/briefxai",
        headers={"Authorization": "Basic dXNlcjpwYXNzd29yZA==", "accept": ["application/json"]},
        detail="retry with token=abc123def456 later",
    )
    record = last_record(capsys)
    assert record["error"] == "user [EMAIL] called [PHONE] and paid with [CARD]; my name is [NAME]"
    assert record["analysis_id"] == "20261203123456789"
    assert record["address"] == "127.0.0.1:50052"
    assert record["store_url"] == "postgresql+psycopg://[REDACTED]@db.internal:5432/briefxai"
    assert record["headers"] == {"Authorization": "[REDACTED]", "accept": ["application/json"]}
    assert record["detail"] == "retry with token=[REDACTED] later"


def test_exception_text_is_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("unit", "info", "json")
    try:
        raise RuntimeError("HTTP 401 for Bearer abcdefghijklmnop from ops@example.org")
    except RuntimeError:
        get_logger("test").exception("llm_call_failed")
    record = last_record(capsys)
    assert record["level"] == "error"
    assert "RuntimeError" in record["exception"]
    assert "abcdefghijklmnop" not in record["exception"] and "ops@example.org" not in record["exception"]


def test_lines_carry_trace_span_and_bound_ids(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("unit", "info", "json")
    tracer = TracerProvider().get_tracer("test")
    with (
        tracer.start_as_current_span("analysis") as span,
        structlog.contextvars.bound_contextvars(analysis_id="a-1", request_id="r-1"),
    ):
        get_logger("test").info("stage_done")
    record = last_record(capsys)
    context = span.get_span_context()
    assert record["trace_id"] == format(context.trace_id, "032x")
    assert record["span_id"] == format(context.span_id, "016x")
    assert (record["analysis_id"], record["request_id"], record["service"]) == ("a-1", "r-1", "unit")
    get_logger("test").info("outside")
    assert not {"trace_id", "span_id", "analysis_id"} & set(last_record(capsys))


def test_library_lines_are_json_too_and_levels_filter(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("unit", "warning", "json")
    get_logger("test").info("too low")
    logging.getLogger("sqlalchemy.pool").info("too low as well")
    logging.getLogger("sqlalchemy.pool").warning("pool %s overflowed for secret=%s", "main", "s3cr3t-value")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["event"] == "pool main overflowed for secret=[REDACTED]"
    assert (record["level"], record["logger"], record["service"]) == ("warning", "sqlalchemy.pool", "unit")


def test_console_format(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("unit", "debug", "console")
    get_logger("test").debug("model loaded", api_key="sk-live-1234567890abcdef")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "model loaded" in line and "service=unit" in line
    assert "sk-live" not in line


def test_file_output_rotates_and_keeps_the_configured_backups(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "unit.log"
    configure_logging("unit", "info", "json", log_file=str(path), max_mb=2 / 1024, backups=2)
    log = get_logger("test")
    for index in range(200):
        log.info("line", index=index, padding="x" * 40)
    reset_logging()
    assert sorted(p.name for p in path.parent.iterdir()) == ["unit.log", "unit.log.1", "unit.log.2"]
    for file in path.parent.iterdir():
        assert file.stat().st_size <= 2 * 1024
        records = [json.loads(line) for line in file.read_text().splitlines()]
        assert records and all(r["service"] == "unit" and r["event"] == "line" for r in records)
    # The newest lines are in the live file, the ones before in .1.
    assert json.loads(path.read_text().splitlines()[-1])["index"] == 199
