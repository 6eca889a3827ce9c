"""Supervisor planning (ports, environment, store) and start-up failure reporting."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from briefxai_cli.supervisor import (
    SERVICES,
    ServicePlan,
    Suite,
    SuitePlan,
    SupervisorError,
    free_ports,
    plan_suite,
    port_in_use,
)


def test_default_ports_and_sqlite_store_in_the_data_dir(tmp_path: Path) -> None:
    plan = plan_suite(tmp_path / "data")
    ports = {s.name: (s.grpc_port, s.http_port) for s in plan.services}
    assert ports == {
        "gateway": (50051, 9091),
        "embedding": (50052, 9092),
        "facets": (50053, 9093),
        "clustering": (50054, 9094),
    }
    assert plan.store_url == f"sqlite:///{(tmp_path / 'data').resolve()}/gateway.db"
    assert plan.store_path == (tmp_path / "data").resolve() / "gateway.db"
    assert plan.gateway_address == "127.0.0.1:50051"


def test_base_port_and_environment(tmp_path: Path) -> None:
    plan = plan_suite(tmp_path, base_port=21000, host="0.0.0.0")
    gateway = plan.service("gateway")
    assert (gateway.grpc_port, gateway.http_port) == (21000, 21010)
    assert gateway.address == "127.0.0.1:21000"
    assert gateway.env["BRIEFXAI_GATEWAY_EMBEDDING_ADDRESS"] == "127.0.0.1:21001"
    assert gateway.env["BRIEFXAI_GATEWAY_FACETS_ADDRESS"] == "127.0.0.1:21002"
    assert gateway.env["BRIEFXAI_GATEWAY_CLUSTERING_ADDRESS"] == "127.0.0.1:21003"
    assert gateway.env["BRIEFXAI_GATEWAY_STORE_URL"] == plan.store_url
    clustering = plan.service("clustering")
    assert clustering.env == {
        "BRIEFXAI_CLUSTERING_HOST": "0.0.0.0",
        "BRIEFXAI_CLUSTERING_GRPC_PORT": "21003",
        "BRIEFXAI_CLUSTERING_HTTP_PORT": "21013",
    }
    assert [s.name for s in plan.services] == list(SERVICES)


def test_free_ports_are_distinct(tmp_path: Path) -> None:
    plan = plan_suite(tmp_path, base_port=0)
    ports = [p for s in plan.services for p in (s.grpc_port, s.http_port)]
    assert len(set(ports)) == 8
    assert len(set(free_ports(5))) == 5


def test_config_file_ports_and_store_url(tmp_path: Path) -> None:
    config = tmp_path / "briefxai.yaml"
    config.write_text(
        "gateway:\n  grpc_port: 6000\n  store_url: postgresql+psycopg://db/briefxai\nfacets:\n  http_port: 7003\n"
    )
    plan = plan_suite(tmp_path, config=config)
    assert plan.service("gateway").grpc_port == 6000
    assert plan.service("facets").http_port == 7003
    assert plan.service("embedding").grpc_port == 50052
    assert plan.store_url == "postgresql+psycopg://db/briefxai"
    assert plan.store_path is None
    assert plan.config == config.resolve()
    # An explicit base port wins over the file.
    assert plan_suite(tmp_path, config=config, base_port=30000).service("gateway").grpc_port == 30000


def test_port_in_use() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert port_in_use(sock.getsockname()[1])


def test_a_service_that_exits_early_is_reported_with_its_log(tmp_path: Path) -> None:
    grpc_port, http_port = free_ports(2)
    service = ServicePlan("does_not_exist", "127.0.0.1", grpc_port, http_port)
    plan = SuitePlan((service,), tmp_path, f"sqlite:///{tmp_path}/x.db")
    suite = Suite(plan, python=sys.executable)
    with pytest.raises(SupervisorError, match="exited with code 1 before it was ready") as info:
        suite.start(timeout=60)
    assert "No module named briefxai_does_not_exist" in str(info.value)
    assert not suite.children
    assert (tmp_path / "logs" / "does_not_exist.log").exists()


def test_busy_port_is_refused_before_starting(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        service = ServicePlan("gateway", "127.0.0.1", port, free_ports(1)[0])
        suite = Suite(SuitePlan((service,), tmp_path, "sqlite:///x"))
        with pytest.raises(SupervisorError, match=f"port {port} \\(gateway gRPC\\) is already in use"):
            suite.start()
