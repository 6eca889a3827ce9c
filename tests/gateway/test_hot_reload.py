"""SIGHUP reloads a running gateway process: the log level, a feature flag and the outage budget change
live, a port change is reported as needing a restart, and an invalid file is rejected and logged while
the old settings stay. Observed through the process's log file and its /health."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway_process import GatewayProcess, until
from tests.support.ports import free_port


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    running = GatewayProcess(tmp_path)
    yield running
    running.close()


def reload(gateway: GatewayProcess, event: str) -> dict[str, Any]:
    """Sends SIGHUP; the next ``event`` line (config_reloaded or config_reload_rejected)."""
    seen = len(gateway.events(event))
    gateway.signal(signal.SIGHUP)
    return until(lambda: gateway.events(event)[seen:][:1], event)[0]


def test_sighup_applies_what_can_change_live_and_rejects_an_invalid_file(gateway: GatewayProcess) -> None:
    gateway.start()
    assert gateway.health()["features"] == {"wait_for_health": True}
    [serving] = gateway.events("serving")
    assert serving["features"] == {"wait_for_health": True}
    gateway.list_analyses()
    assert not gateway.events("rpc_done")  # a debug line

    gateway.write(
        log_level="debug",
        outage_budget_seconds=30,
        features={"wait_for_health": False},
        circuit_breakers={"facets": {"failure_threshold": 7}},
        retry_policies={"embedding": {"max_attempts": 9}, "store": {"max_attempts": 5}},
        grpc_port=free_port(),
    )
    reloaded = reload(gateway, "config_reloaded")
    assert reloaded["level"] == "info"
    assert reloaded["changed"] == [
        "circuit_breakers.facets.failure_threshold",
        "features.wait_for_health",
        "grpc_port",
        "log_level",
        "outage_budget_seconds",
        "retry_policies.embedding.max_attempts",
        "retry_policies.store.max_attempts",
    ]
    assert reloaded["applied"] == [
        "circuit_breakers",
        "features",
        "log_level",
        "outage_budget_seconds",
        "retry_policies",
    ]
    assert reloaded["needs_restart"] == ["grpc_port"]
    assert reloaded["features"] == {"wait_for_health": False}
    health = gateway.health()
    assert health["features"] == {"wait_for_health": False}
    assert health["downstream"]["facets"]["circuit_breaker"]["failure_threshold"] == 7
    assert health["downstream"]["embedding"]["circuit_breaker"]["failure_threshold"] == 5
    # Debug lines now; the gRPC port is still the old one.
    gateway.list_analyses()
    until(lambda: gateway.events("rpc_done"), "a debug line after the reload")

    gateway.config.write_text("gateway:\n  log_level: loud\n")
    rejected = reload(gateway, "config_reload_rejected")
    assert rejected["level"] == "error" and "gateway.log_level" in rejected["error"]
    assert gateway.health()["features"] == {"wait_for_health": False}
    done = len(gateway.events("rpc_done"))
    gateway.list_analyses()
    until(lambda: len(gateway.events("rpc_done")) > done, "debug lines still on after the rejection")
    assert gateway.stop() == 0


def test_a_change_of_the_config_file_reloads_without_a_signal(gateway: GatewayProcess) -> None:
    """The file is watched: a new content is applied like a SIGHUP; the same content written again is not
    a change."""
    gateway.start()
    gateway.write(outage_budget_seconds=45)
    reloaded = until(lambda: gateway.events("config_reloaded"), "a reload after the file changed")[0]
    assert reloaded["changed"] == ["outage_budget_seconds"] and reloaded["applied"] == [
        "outage_budget_seconds"
    ]
    assert gateway.events("config_file_changed")
    gateway.write(outage_budget_seconds=45)
    gateway.write(outage_budget_seconds=46, log_level="loud")
    rejected = until(lambda: gateway.events("config_reload_rejected"), "an invalid file rejected")[0]
    assert "gateway.log_level" in rejected["error"]
    assert len(gateway.events("config_reloaded")) == 1
    assert gateway.stop() == 0
