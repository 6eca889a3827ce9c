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
