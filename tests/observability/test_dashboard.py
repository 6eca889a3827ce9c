"""The Grafana dashboard of deploy/grafana: its shape, its data source variable, its queries.

Whether its queries read only metrics the running services export is checked against their real
/metrics in test_prometheus.py (e2e); here, against the reference names and the metrics the service
modules register, and every query must parse (promtool, on a rule file made of the queries).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest

from tests.observability.support import (
    DASHBOARD,
    dashboard_exprs,
    dashboard_panels,
    exposed_names,
    load_dashboard,
    metric_names,
    promtool,
    reference_names,
    substitute_variables,
)

DATASOURCE = "${datasource}"
# The dashboard's subjects, each read by some panel.
REQUIRED_METRICS = (
    "briefxai_operations_total",
    "briefxai_errors_total",
    "briefxai_operation_duration_seconds_bucket",
    "briefxai_memory_usage_bytes",
    "briefxai_active_sessions",
    "briefxai_circuit_breaker_state",
    "briefxai_analyses_total",
    "briefxai_conversations_processed_total",
    "briefxai_stage_seconds_bucket",
    "briefxai_event_loop_lag_seconds_bucket",
    "up",
)
METRIC_MODULES = (
    "briefxai_common.service_metrics",
    "briefxai_gateway.metrics",
    "briefxai_embedding.metrics",
    "briefxai_facets.metrics",
    "briefxai_clustering.metrics",
)


def registered_names() -> set[str]:
    """Names the service metric modules register on the default registry (imported here)."""
    for module in METRIC_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)
    return exposed_names(generate_latest(REGISTRY).decode())


def test_the_dashboard_is_grafana_json_with_a_datasource_variable() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "briefxai" and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    job = variables["job"]
    assert job["datasource"]["uid"] == DATASOURCE and job["includeAll"] and job["multi"]


def test_every_panel_queries_prometheus_through_the_variable() -> None:
    dashboard = load_dashboard()
    panels = list(dashboard_panels(dashboard))
    assert len(panels) >= 10
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in panels:
        title = panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE}, title
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, title
        targets = panel["targets"]
        assert targets, f"{title} has no query"
        assert len({t["refId"] for t in targets}) == len(targets), f"{title}: duplicate refIds"
        for target in targets:
            assert target["datasource"]["uid"] == DATASOURCE, title
            assert target["expr"].strip(), f"{title} [{target['refId']}] has an empty expr"


def test_every_query_selects_the_briefxai_targets_of_the_chosen_services() -> None:
    for where, expr in dashboard_exprs(load_dashboard()):
        selectors = re.findall(r"\{([^}]*)\}", expr)
        assert selectors, f"{where}: no label matchers"
        for selector in selectors:
            assert 'app="briefxai"' in selector and 'job=~"$job"' in selector, f"{where}: {{{selector}}}"


def test_every_query_parses(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:query_{i}", "expr": substitute_variables(expr)}
        for i, (_, expr) in enumerate(dashboard_exprs(load_dashboard()))
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_queries_read_known_metrics_and_cover_every_subject() -> None:
    known = reference_names() | registered_names()
    read: set[str] = set()
    for where, expr in dashboard_exprs(load_dashboard()):
        names = metric_names(expr)
        assert names, f"{where} reads no metric"
        unknown = names - known
        assert not unknown, f"{where} reads {sorted(unknown)}: neither a reference name nor registered"
        read |= names
    missing = [name for name in REQUIRED_METRICS if name not in read]
    assert not missing, f"no panel reads {missing}"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('up{app="briefxai"} == 0', {"up"}),
        (
            'histogram_quantile(0.95, sum by (le, stage) (rate(briefxai_stage_seconds_bucket{job=~"$job"}'
            "[$__rate_interval])))",
            {"briefxai_stage_seconds_bucket"},
        ),
        (
            'sum(rate(a_total{status!~"OK|x{y}"}[5m])) / on (job) group_left(instance) b_total offset 5m',
            {"a_total", "b_total"},
        ),
        ("deriv(mem_bytes[30m]) * 3600 > 100 * 1024 and bool 1e3 > 2", {"mem_bytes"}),
        ("sum(x) by (le) or vector(0) unless count without (kind) (y:rule)", {"x", "y:rule"}),
    ],
)
def test_metric_names_finds_selected_metrics_only(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_exposed_names_reads_samples_and_declared_families() -> None:
    text = (
        "# HELP a_total Things.\n# TYPE a_total counter\n"
        "# HELP h Seconds.\n# TYPE h histogram\n"
        'g{service="x"} 1.0\n'
        "# TYPE c counter\nc_total 3\n"
    )
    names = exposed_names(text)
    assert {"g", "h_bucket", "h_sum", "h_count", "c_total", "a_total"} <= names
    assert DASHBOARD.exists()
