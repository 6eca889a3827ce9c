"""Log lines are JSON with service and level, and secrets never reach them."""

from __future__ import annotations

import json

import pytest
import structlog

from briefxai_common.logging import configure_logging, get_logger


def test_json_lines_redact_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    structlog.reset_defaults()
    configure_logging("unit", "info", "json")
    log = get_logger("test")
    log.info("calling provider", api_key="sk-live-1234567890abcdef", note="header Bearer abcdefghijklmnop")
    structlog.reset_defaults()
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["event"] == "calling provider"
    assert record["service"] == "unit"
    assert record["level"] == "info"
    assert record["api_key"] == "[REDACTED]"
    assert "abcdefghijklmnop" not in line
    assert "sk-live" not in line


def test_counts_named_like_tokens_are_not_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    structlog.reset_defaults()
    configure_logging("unit", "info", "json")
    get_logger("test").info("model loaded", max_tokens=256, access_token="abc123", client_secret="x")
    structlog.reset_defaults()
    record = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert record["max_tokens"] == 256
    assert record["access_token"] == "[REDACTED]"
    assert record["client_secret"] == "[REDACTED]"
