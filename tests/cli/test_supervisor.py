"""Supervisor planning (ports, environment, store, replicas), start-up failure reporting, and restarts of
what dies."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import psutil
import pytest
from click.testing import CliRunner

from briefxai_cli.main import cli
from briefxai_cli.supervisor import (
    SERVICES,
    RestartPolicy,
    ServicePlan,
    Suite,
    SuitePlan,
    SupervisorError,
    free_ports,
    parse_replicas,
    plan_suite,
    port_in_use,
)
from briefxai_common.channels import channel_target
from tests.support.services import assert_serving


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
    plan = plan_suite(tmp_path, base_port=21000, host="0.0.0.0")  # noqa: S104  the wildcard is what this test plans
    gateway = plan.service("gateway")
    assert (gateway.grpc_port, gateway.http_port) == (21000, 21010)
    assert gateway.address == "127.0.0.1:21000"
    assert gateway.env["BRIEFXAI_GATEWAY_EMBEDDING_ADDRESS"] == "127.0.0.1:21001"
    assert gateway.env["BRIEFXAI_GATEWAY_FACETS_ADDRESS"] == "127.0.0.1:21002"
    assert gateway.env["BRIEFXAI_GATEWAY_CLUSTERING_ADDRESS"] == "127.0.0.1:21003"
    assert gateway.env["BRIEFXAI_GATEWAY_STORE_URL"] == plan.store_url
    clustering = plan.service("clustering")
    assert clustering.env == {
        "BRIEFXAI_CLUSTERING_HOST": "0.0.0.0",  # noqa: S104  the wildcard is what this test checks
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


# -- replicas ---------------------------------------------------------------------------------------


def test_replicas_take_the_ports_after_the_four_and_the_gateway_gets_the_list(tmp_path: Path) -> None:
    plan = plan_suite(tmp_path, base_port=21000, replicas={"embedding": 2, "facets": 3})
    ports = {s.instance: (s.grpc_port, s.http_port) for s in plan.services}
    assert ports == {
        "embedding-1": (21001, 21011),
        "embedding-2": (21004, 21014),
        "facets-1": (21002, 21012),
        "facets-2": (21005, 21015),
        "facets-3": (21006, 21016),
        "clustering": (21003, 21013),
        "gateway": (21000, 21010),
    }
    gateway = plan.service("gateway").env
    assert gateway["BRIEFXAI_GATEWAY_EMBEDDING_ADDRESS"] == "ipv4:127.0.0.1:21001,127.0.0.1:21004"
    assert (
        gateway["BRIEFXAI_GATEWAY_FACETS_ADDRESS"] == "ipv4:127.0.0.1:21002,127.0.0.1:21005,127.0.0.1:21006"
    )
    assert gateway["BRIEFXAI_GATEWAY_CLUSTERING_ADDRESS"] == "127.0.0.1:21003"
    assert plan.service("embedding-2").env == {
        "BRIEFXAI_EMBEDDING_HOST": "127.0.0.1",
        "BRIEFXAI_EMBEDDING_GRPC_PORT": "21004",
        "BRIEFXAI_EMBEDDING_HTTP_PORT": "21014",
    }
    assert plan.service("embedding") == plan.service("embedding-1")
    assert [s.instance for s in plan.replicas("facets")] == ["facets-1", "facets-2", "facets-3"]
    # The gateway's settings accept what the supervisor passes.
    from briefxai_gateway.settings import GatewaySettings

    settings = GatewaySettings.load(embedding_address=gateway["BRIEFXAI_GATEWAY_EMBEDDING_ADDRESS"])
    assert settings.embedding_address.startswith("ipv4:")


@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("localhost:50052", "localhost:50052"),
        ("dns:///briefxai-embedding:50052", "dns:///briefxai-embedding:50052"),
        ("ipv4:10.0.0.1:1,10.0.0.2:1", "ipv4:10.0.0.1:1,10.0.0.2:1"),
        ("10.0.0.1:1, 10.0.0.2:1", "ipv4:10.0.0.1:1,10.0.0.2:1"),
        ("[::1]:1,[::1]:2", "ipv6:[::1]:1,[::1]:2"),
    ],
)
def test_gateway_addresses_become_grpc_targets(address: str, target: str) -> None:
    from briefxai_gateway.settings import GatewaySettings

    assert channel_target(address) == target
    assert GatewaySettings.load(facets_address=address).facets_address == target


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("embedding-1:1,embedding-2:1", "takes IP literals"),
        ("10.0.0.1:1,[::1]:1", "mixes IPv4 and IPv6"),
        ("10.0.0.1,10.0.0.2:1", "is not host:port"),
    ],
)
def test_address_lists_grpc_cannot_resolve_are_refused_at_load(address: str, message: str) -> None:
    from briefxai_common.config import ConfigError
    from briefxai_gateway.settings import GatewaySettings

    with pytest.raises((ValueError, ConfigError), match=message):
        GatewaySettings.load(embedding_address=address)


def test_replicas_on_the_default_and_on_free_ports(tmp_path: Path) -> None:
    plan = plan_suite(tmp_path, replicas={"clustering": 2})
    assert (plan.service("clustering-2").grpc_port, plan.service("clustering-2").http_port) == (50055, 9095)
    free = plan_suite(tmp_path, base_port=0, replicas={"embedding": 2, "facets": 2})
    ports = [p for s in free.services for p in (s.grpc_port, s.http_port)]
    assert len(ports) == 12 and len(set(ports)) == 12


def test_replicas_that_would_reach_the_http_ports_are_refused(tmp_path: Path) -> None:
    assert (
        plan_suite(tmp_path, base_port=21000, replicas={"facets": 7}).service("facets-7").grpc_port == 21009
    )
    with pytest.raises(SupervisorError, match="port 21010 would serve facets-8 gRPC and gateway HTTP"):
        plan_suite(tmp_path, base_port=21000, replicas={"facets": 8})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gateway=2", "the gateway runs once locally: its store is SQLite"),
        ("search=2", "unknown service 'search'"),
        ("embedding=0", "must be 1 or more"),
        ("embedding=-2", "must be 1 or more"),
        ("embedding", "expected SERVICE=COUNT"),
        ("embedding=two", "expected SERVICE=COUNT"),
        ("embedding=2,embedding=3", "embedding is given twice"),
    ],
)
def test_replica_counts_are_checked(text: str, message: str) -> None:
    with pytest.raises(SupervisorError, match=message):
        parse_replicas(text)


def test_up_refuses_bad_replicas_before_starting_anything(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["up", "--data-dir", str(tmp_path), "--replicas", "gateway=2"])
    assert result.exit_code == 2
    assert "the gateway runs once locally" in result.stderr
    assert not (tmp_path / "logs").exists()
    assert "--replicas" in CliRunner().invoke(cli, ["up", "--help"]).stdout


def test_each_replica_gets_its_own_log_file_when_one_is_configured(tmp_path: Path) -> None:
    config = tmp_path / "briefxai.yaml"
    config.write_text("embedding:\n  log_file: /var/log/briefxai/embedding.log\n")
    plan = plan_suite(tmp_path, config=config, replicas={"embedding": 2})
    files = [s.env["BRIEFXAI_EMBEDDING_LOG_FILE"] for s in plan.replicas("embedding")]
    assert files == ["/var/log/briefxai/embedding-1.log", "/var/log/briefxai/embedding-2.log"]
    assert "BRIEFXAI_EMBEDDING_LOG_FILE" not in plan_suite(tmp_path, config=config).service("embedding").env


# -- restarts ---------------------------------------------------------------------------------------


def test_the_port_check_passes_over_time_wait_left_by_a_killed_server() -> None:
    """A server (SO_REUSEADDR, as gRPC and aiohttp set it) is killed with a client connected: its side
    closes first and is left in TIME-WAIT, which a bind without SO_REUSEADDR trips on; the check does
    not, and a new gRPC server binds the port at once, as a restarted service does."""
    port = free_ports(1)[0]
    server = subprocess.Popen(
        [sys.executable, "-c", ACCEPT_ONE, str(port)], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == b"listening"
        assert port_in_use(port)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            assert server.stdout.readline().strip() == b"accepted"
            server.kill()
            server.wait()
            assert (
                client.recv(1) == b""
            )  # the server's FIN; closing now leaves the server's side in TIME-WAIT
    finally:
        server.kill()
        server.wait()
    wait_until(functools.partial(time_wait_on, port), 10, f"TIME-WAIT on port {port}")
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))
    assert not port_in_use(port)
    restarted = grpc.server(ThreadPoolExecutor(1))
    try:
        assert restarted.add_insecure_port(f"127.0.0.1:{port}") == port
    finally:
        restarted.stop(None)


def time_wait_on(port: int) -> bool:
    return any(
        c.laddr and c.laddr.port == port and c.status == psutil.CONN_TIME_WAIT
        for c in psutil.net_connections(kind="tcp")
    )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {timeout:g}s")
        time.sleep(0.1)


def test_a_killed_replica_is_restarted_while_the_others_keep_serving(tmp_path: Path) -> None:
    full = plan_suite(tmp_path, base_port=0, replicas={"facets": 2})
    plan = SuitePlan(
        tuple(s for s in full.services if s.name in ("facets", "clustering")), full.data_dir, full.store_url
    )
    suite = Suite(plan)
    events: list[str] = []
    try:
        suite.start(timeout=300)
        suite.supervise_in_background(RestartPolicy(initial_backoff=0.2), on_event=events.append)
        before = suite.pids()
        os.kill(before["facets-2"], signal.SIGKILL)
        wait_until(lambda: any("facets-2 is SERVING again" in e for e in events), 300, "SERVING again")
        after = suite.pids()
        assert after["facets-2"] != before["facets-2"]
        assert {n: p for n, p in after.items() if n != "facets-2"} == {
            n: p for n, p in before.items() if n != "facets-2"
        }
        asyncio.run(assert_serving(plan.service("facets-2").address, "briefxai.facets.v1.FacetsService"))
        assert suite.restarts == {"facets-2": 1}
        assert events[0].startswith("facets-2 exited with signal SIGKILL after ")
        assert "restarting it in 0.2s (failure 1 in a row; giving up at 5)" in events[0]
        log = suite.log_path("facets-2").read_text()
        assert log.count("--- starting briefxai_facets") == 2
        assert "--- supervisor: facets-2 restarted (pid " in log
        assert "--- supervisor:" not in suite.log_path("facets-1").read_text()
    finally:
        codes = suite.stop()
    assert codes == {"facets-1": 0, "facets-2": 0, "clustering": 0}
    assert suite.failure is None


FLAKY = """
import os, sys
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2_grpc

if os.path.exists(os.environ["FLAKY_CRASH_FILE"]):
    print("crashing on purpose", flush=True)
    sys.exit(3)
server = grpc.server(futures.ThreadPoolExecutor(2))
health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
server.add_insecure_port("127.0.0.1:" + os.environ["FLAKY_GRPC_PORT"])
server.start()
print("serving", flush=True)
server.wait_for_termination()
"""
ACCEPT_ONE = """
import socket, sys, time

listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", int(sys.argv[1])))
listener.listen()
print("listening", flush=True)
connection, _ = listener.accept()
print("accepted", flush=True)
time.sleep(600)
"""


def serving_again(events: list[str], times: int) -> bool:
    return sum("SERVING again" in e for e in events) == times


def flaky_suite(tmp_path: Path) -> tuple[Suite, Path]:
    """A one-service suite of a real gRPC health server that exits with code 3 at start while the
    returned file exists."""
    package = tmp_path / "modules" / "briefxai_flaky"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FLAKY)
    crash_file = tmp_path / "crash"
    grpc_port, http_port = free_ports(2)
    env = {"FLAKY_GRPC_PORT": str(grpc_port), "FLAKY_CRASH_FILE": str(crash_file)}
    suite = Suite(
        SuitePlan((ServicePlan("flaky", "127.0.0.1", grpc_port, http_port, env),), tmp_path, "sqlite:///x"),
        extra_env={"PYTHONPATH": str(tmp_path / "modules")},
    )
    return suite, crash_file


def test_the_backoff_starts_again_once_a_restarted_service_has_stayed_up(tmp_path: Path) -> None:
    suite, _ = flaky_suite(tmp_path)
    events: list[str] = []
    policy = RestartPolicy(initial_backoff=0.1, max_backoff=0.4, stable_seconds=1.0)
    try:
        suite.start(timeout=60)
        suite.supervise_in_background(policy, on_event=events.append)
        for restart in (1, 2):
            os.kill(suite.pids()["flaky"], signal.SIGKILL)
            wait_until(functools.partial(serving_again, events, restart), 60, "SERVING again")
            time.sleep(1.5)  # longer than stable_seconds
    finally:
        suite.stop()
    delays = [e for e in events if "restarting it in" in e]
    assert len(delays) == 2
    assert all("restarting it in 0.1s (failure 1 in a row" in e for e in delays), delays
    assert suite.restarts == {"flaky": 2} and suite.failure is None


def test_a_service_that_keeps_dying_is_given_up_and_the_suite_stopped(tmp_path: Path) -> None:
    suite, crash_file = flaky_suite(tmp_path)
    events: list[str] = []
    policy = RestartPolicy(initial_backoff=0.1, max_backoff=0.3, max_rapid_crashes=4)
    try:
        suite.start(timeout=60)
        suite.supervise_in_background(policy, on_event=events.append)
        crash_file.touch()
        os.kill(suite.pids()["flaky"], signal.SIGKILL)
        wait_until(lambda: suite.failure is not None, 60, "given up")
    finally:
        suite.stop()
    assert not suite.children
    failure = suite.failure or ""
    assert "flaky exited with code 3" in failure and "failure 4 in a row" in failure
    assert "giving up and stopping the suite" in failure and "crashing on purpose" in failure
    delays = [e.split("restarting it in ")[1].split("s ")[0] for e in events if "restarting it in" in e]
    assert delays == ["0.1", "0.2", "0.3"]
    assert suite.restarts == {"flaky": 3}
    log = suite.log_path("flaky").read_text()
    assert log.count("crashing on purpose") == 3
    assert "--- supervisor: flaky exited with signal SIGKILL" in log
