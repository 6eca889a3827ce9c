"""The Prometheus config and alert rules of deploy/prometheus, checked by promtool and by a real Prometheus.

The promtool checks run without services. The e2e tests start the four services as real processes and
a real Prometheus (Debian's package; CI installs it) scraping them every second with the shipped
config, retargeted at the suite's ports and with the shipped alert rules: every target is up, every
rule evaluates, an analysis moves the business metrics as Prometheus sees them, and the dashboard's
queries read only metrics the services export.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from briefxai.gateway.v1 import gateway_pb2
from briefxai_cli.client import GatewayClient, build_options
from briefxai_cli.supervisor import SERVICES, Suite, plan_suite
from tests.e2e.support import generated
from tests.observability.support import (
    ALERT_RULES,
    ALERT_TESTS,
    ALERTS,
    PROMETHEUS_CONFIG,
    Prometheus,
    alert_rules,
    binary,
    dashboard_exprs,
    exposed_names,
    load_dashboard,
    metric_names,
    promtool,
    reference_names,
    substitute_variables,
)
from tests.support.http import http_get

START_TIMEOUT = 600.0
WAIT_SECONDS = 90.0  # for Prometheus to see a change: scrapes every second
CONVERSATIONS = 80


# -- promtool --------------------------------------------------------------------------------------


def test_promtool_accepts_the_config_and_its_rules() -> None:
    checked = promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout and "1 rule files found" in checked.stdout


def test_promtool_accepts_the_alert_rules() -> None:
    checked = promtool("check", "rules", str(ALERT_RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout


def test_the_alert_rules_pass_their_unit_tests() -> None:
    tested = promtool("test", "rules", ALERT_TESTS.name, cwd=ALERT_TESTS.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    assert [rule["alert"] for rule in alert_rules()] == list(ALERTS)
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert firing == set(ALERTS), f"alerts never expected to fire: {set(ALERTS) - firing}"
    assert quiet == set(ALERTS), f"alerts never expected to stay quiet: {set(ALERTS) - quiet}"


def test_alert_rules_read_only_the_reference_metrics() -> None:
    known = reference_names()
    for rule in alert_rules():
        unknown = metric_names(rule["expr"]) - known
        assert not unknown, f"{rule['alert']} reads metrics outside the reference list: {sorted(unknown)}"
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_the_config_scrapes_every_service_as_its_own_job() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(SERVICES)
    for job in jobs.values():
        (targets,) = job["static_configs"]
        assert len(targets["targets"]) == 1
        assert targets["labels"] == {"app": "briefxai"}
    assert config["rule_files"] == [ALERT_RULES.name]


# -- a real Prometheus over the real services ------------------------------------------------------


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    binary("prometheus")  # fail before spending minutes on the suite
    data_dir = tmp_path_factory.mktemp("briefxai-observed")
    running = Suite(plan_suite(data_dir, base_port=0))
    running.start(timeout=START_TIMEOUT)
    yield running
    codes = running.stop()
    assert codes == {name: 0 for name in codes}, f"services did not stop cleanly: {codes}"


def scrape_config_for(suite: Suite) -> dict[str, Any]:
    """The shipped config, scraping ``suite``'s HTTP ports every second, with the shipped rules."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(ALERT_RULES)]
    for job in config["scrape_configs"]:
        port = suite.plan.service(job["job_name"]).http_port
        job["static_configs"][0]["targets"] = [f"127.0.0.1:{port}"]
    return config


@pytest.fixture(scope="module")
def prometheus(suite: Suite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    work = tmp_path_factory.mktemp("prometheus")
    config_path = work / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(scrape_config_for(suite), sort_keys=False))
    checked = promtool("check", "config", str(config_path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    with Prometheus(config_path, work) as running:
        yield running


def wait_for(what: str, probe: Callable[[], Any], done: Callable[[Any], bool], prometheus: Prometheus) -> Any:
    """Polls ``probe()`` until ``done(value)``, for at most :data:`WAIT_SECONDS`; returns the last value."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what}: not reached after {WAIT_SECONDS:.0f}s; last: {value}\n{prometheus.log_tail()}"
            )
        time.sleep(0.5)


def targets_up(prometheus: Prometheus) -> dict[str, str]:
    """``{job: value of up}`` for the BriefXAI targets."""
    return {row["metric"]["job"]: row["value"][1] for row in prometheus.query('up{app="briefxai"}')}


def every_target_up(prometheus: Prometheus) -> None:
    wait_for(
        "up == 1 for every service",
        lambda: targets_up(prometheus),
        lambda up: up == {name: "1" for name in SERVICES},
        prometheus,
    )


@pytest.mark.e2e
@pytest.mark.timeout(1200)
def test_prometheus_scrapes_every_service_and_evaluates_every_rule(prometheus: Prometheus) -> None:
    every_target_up(prometheus)
    active = prometheus.api("targets", state="active")["activeTargets"]
    assert {t["labels"]["job"]: t["health"] for t in active} == {name: "up" for name in SERVICES}

    def rules() -> dict[str, tuple[str, str | None, float | None]]:
        groups = prometheus.api("rules", type="alert")["groups"]
        return {
            rule["name"]: (rule["health"], rule.get("lastError"), rule.get("evaluationTime"))
            for group in groups
            for rule in group["rules"]
        }

    evaluated = wait_for(
        "every alert rule evaluated",
        rules,
        lambda found: set(found) == set(ALERTS) and all(h != "unknown" for h, _, _ in found.values()),
        prometheus,
    )
    broken = {name: error for name, (health, error, _) in evaluated.items() if health != "ok"}
    assert not broken, f"alert rules failing on the real metrics: {broken}"
    firing = prometheus.api("alerts")["alerts"]
    assert not [a for a in firing if a["state"] == "firing"], f"alerts firing on an idle suite: {firing}"


BUSINESS = {
    "pending": 'sum(briefxai_analyses_total{app="briefxai", state="pending"}) or vector(0)',
    "succeeded": 'sum(briefxai_analyses_total{app="briefxai", state="succeeded"}) or vector(0)',
    "facets": 'sum(briefxai_conversations_processed_total{app="briefxai", stage="facets"}) or vector(0)',
    "embed": 'sum(briefxai_conversations_processed_total{app="briefxai", stage="embed"}) or vector(0)',
    "created": (
        'sum(briefxai_operations_total{app="briefxai", service="gateway", operation="CreateAnalysis", '
        'status="OK"}) or vector(0)'
    ),
}


@pytest.mark.e2e
@pytest.mark.timeout(1200)
def test_an_analysis_moves_the_business_metrics_prometheus_sees(suite: Suite, prometheus: Prometheus) -> None:
    every_target_up(prometheus)
    before = {name: prometheus.scalar(expr) for name, expr in BUSINESS.items()}

    with GatewayClient(suite.gateway_address, api_key=suite.admin_key) as client:
        analysis = client.create(generated(CONVERSATIONS, 11), build_options(seed=5, display_name="observed"))
        final = client.wait(analysis.id)
    assert final.state == gateway_pb2.ANALYSIS_STATE_SUCCEEDED, final.error

    expected = {"pending": 1, "succeeded": 1, "facets": CONVERSATIONS, "embed": CONVERSATIONS, "created": 1}
    after = wait_for(
        "the analysis seen by Prometheus",
        lambda: {name: prometheus.scalar(expr) for name, expr in BUSINESS.items()},
        lambda now: all(now[name] - before[name] >= delta for name, delta in expected.items()),
        prometheus,
    )
    assert {name: after[name] - before[name] for name in expected} == expected

    # The per-service reference series exist for every service.
    memory = prometheus.query('briefxai_memory_usage_bytes{app="briefxai"}')
    assert {row["metric"]["service"] for row in memory} == set(SERVICES)
    assert all(float(row["value"][1]) > 0 for row in memory)


@pytest.mark.e2e
@pytest.mark.timeout(1200)
def test_the_dashboard_reads_only_exported_metrics(suite: Suite, prometheus: Prometheus) -> None:
    exported: set[str] = set()
    for plan in suite.plan.services:
        status, body = http_get(plan.http_port, "/metrics")
        assert status == 200, f"{plan.name} /metrics: {status}"
        exported |= exposed_names(body.decode())
    known = exported | reference_names()

    every_target_up(prometheus)
    for where, expr in dashboard_exprs(load_dashboard()):
        unknown = metric_names(expr) - known
        assert not unknown, f"{where} reads {sorted(unknown)}: not in any /metrics nor the reference list"
        prometheus.query(substitute_variables(expr))  # the real engine accepts it


def test_the_prometheus_helper_reports_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("scrape_configs:\n  - job_name: x\n    scrape_interval: often\n")
    with pytest.raises(AssertionError, match="exited with code"):
        Prometheus(bad, tmp_path).start(timeout=30)
