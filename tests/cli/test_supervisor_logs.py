"""``briefxai up``'s supervisor: each service's output rotated like the services' own log files, and
the ``monitoring:`` block's ports and the log sizes read from the config file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from briefxai_cli.supervisor import ServicePlan, Suite, SuitePlan, SupervisorError, free_ports, plan_suite

CHATTY = """
import sys
for index in range(3000):
    print(f"line {index:05d} " + "x" * 40)
print("the last line", file=sys.stderr)
sys.exit(3)
"""


def test_child_output_is_rotated_with_the_configured_backups(tmp_path: Path) -> None:
    package = tmp_path / "modules" / "briefxai_chatty"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(CHATTY)
    grpc_port, http_port = free_ports(2)
    service = ServicePlan("chatty", "127.0.0.1", grpc_port, http_port, log_max_mb=16 / 1024, log_backups=2)
    suite = Suite(
        SuitePlan((service,), tmp_path, f"sqlite:///{tmp_path}/x.db"),
        python=sys.executable,
        extra_env={"PYTHONPATH": str(tmp_path / "modules")},
    )
    with pytest.raises(SupervisorError, match="exited with code 3 before it was ready") as info:
        suite.start(timeout=60)
    # The error shows the last lines, stderr included, though the file has been rotated many times.
    assert "the last line" in str(info.value)
    logs = tmp_path / "logs"
    assert sorted(p.name for p in logs.iterdir()) == ["chatty.log", "chatty.log.1", "chatty.log.2"]
    assert all(p.stat().st_size <= 16 * 1024 for p in logs.iterdir())
    assert (logs / "chatty.log").read_text().splitlines()[-1] == "the last line"
    assert (logs / "chatty.log.1").read_text().splitlines()[-1].startswith("line ")


def test_ports_and_log_sizes_come_from_the_monitoring_block_and_sections(tmp_path: Path) -> None:
    config = tmp_path / "briefxai.yaml"
    config.write_text(
        "monitoring:\n  prometheus:\n    port: 9500\n"
        "facets:\n  http_port: 7003\n  log_max_mb: 20\n  log_backups: 0\n"
    )
    plan = plan_suite(tmp_path, config=config)
    http_ports = {s.name: s.http_port for s in plan.services}
    assert http_ports == {"gateway": 9500, "embedding": 9501, "facets": 7003, "clustering": 9503}
    facets = plan.service("facets")
    assert (facets.log_max_mb, facets.log_backups) == (20, 0)
    assert (plan.service("gateway").log_max_mb, plan.service("gateway").log_backups) == (100, 5)


def test_an_invalid_monitoring_block_stops_the_plan(tmp_path: Path) -> None:
    config = tmp_path / "briefxai.yaml"
    config.write_text("monitoring:\n  prometheus:\n    prot: 9090\n")
    with pytest.raises(SupervisorError, match=r"monitoring\.prometheus\.prot"):
        plan_suite(tmp_path, config=config)
