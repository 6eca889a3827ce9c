"""The chart's probes against the real services: each service is started as a process from the rendered
ConfigMap and its container's environment, only its listening ports moved to free ports on 127.0.0.1
and its writable directories (the pod's volumes) to a temporary one, through the same
``BRIEFXAI_<SERVICE>_*`` variables the services read; the gateway's key files (the chart's Secrets)
are written there too, and the config's paths to them moved with them. Each must answer the readiness
probe's grpc.health.v1 service name SERVING on the port the probe asks (the one the config makes it
listen on), serve /metrics on its HTTP port, pass the `helm test` pod's own check, and exit cleanly
within the pod's termination grace period on SIGTERM.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from briefxai_cli.supervisor import ServicePlan, Suite, SuitePlan, free_ports
from tests.deploy.chart import NAMESPACE, SERVICES, Manifest, container_env, mounted_files, render
from tests.support.http import http_get
from tests.support.services import assert_serving

pytestmark = pytest.mark.e2e
START_TIMEOUT = 600.0  # the embedding model loads and the clustering service compiles UMAP's code


@dataclass(frozen=True)
class Deployed:
    """A service as the chart deploys it, and where the local process listens instead."""

    name: str
    container: dict[str, Any]
    termination_grace: int
    config: dict[str, Any]
    plan: ServicePlan


def _container(manifests: list[Manifest], service: str) -> tuple[dict[str, Any], int]:
    (body,) = [m.body for m in manifests if m.kind == "Deployment" and m.name == f"briefxai-{service}"]
    pod = body["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return container, pod["terminationGracePeriodSeconds"]


def _with_local_key_files(config_text: str, manifests: list[Manifest], root: Path) -> str:
    """``config_text`` with the paths of the files mounted into the gateway (its admin and audit keys)
    moved to copies under ``root``."""
    (body,) = [m.body for m in manifests if m.kind == "Deployment" and m.name == "briefxai-gateway"]
    pod = body["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    for path, content in mounted_files(manifests, pod, container).items():
        local = root / path.lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(content)
        config_text = config_text.replace(path, str(local))
    return config_text


@pytest.fixture(scope="module")
def manifests() -> list[Manifest]:
    return render({})


@pytest.fixture(scope="module")
def deployed(
    manifests: list[Manifest], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Deployed]]:
    """The four services started from the rendered chart (default values), in parallel."""
    work = tmp_path_factory.mktemp("helm-probes")
    (config_map,) = [m.body for m in manifests if m.kind == "ConfigMap" and m.name == "briefxai-config"]
    config_path = work / "briefxai.yaml"
    config_path.write_text(
        _with_local_key_files(config_map["data"]["briefxai.yaml"], manifests, work / "pod")
    )
    config = yaml.safe_load(config_path.read_text())
    ports = iter(free_ports(2 * len(SERVICES)))
    services = {}
    for service in SERVICES:
        container, grace = _container(manifests, service)
        env = container_env(
            container, {"metadata.name": f"briefxai-{service}-0", "metadata.namespace": NAMESPACE}
        )
        assert env["BRIEFXAI_CONFIG"].startswith("/etc/briefxai/")  # the ConfigMap's mount: here its copy
        env["BRIEFXAI_CONFIG"] = str(config_path)
        prefix = f"BRIEFXAI_{service.upper()}_"
        grpc_port, http_port = next(ports), next(ports)
        env |= {
            f"{prefix}HOST": "127.0.0.1",
            f"{prefix}GRPC_PORT": str(grpc_port),
            f"{prefix}HTTP_PORT": str(http_port),
        }
        if service == "gateway":  # the SQLite file on the pod's data volume
            store = Path(env[f"{prefix}STORE_URL"].removeprefix("sqlite:///"))
            env[f"{prefix}STORE_URL"] = f"sqlite:///{work / 'data' / store.name}"
        plan = ServicePlan(service, "127.0.0.1", grpc_port, http_port, env)
        services[service] = Deployed(service, container, grace, config[service], plan)
    (work / "data").mkdir()
    plans = tuple(services[name].plan for name in SERVICES)
    suite = Suite(
        SuitePlan(plans, work, services["gateway"].plan.env["BRIEFXAI_GATEWAY_STORE_URL"], config_path)
    )
    suite.start(timeout=START_TIMEOUT)
    try:
        yield services
    finally:
        codes = suite.stop(grace=min(s.termination_grace for s in services.values()))
    assert codes == dict.fromkeys(codes, 0), (
        f"not stopped cleanly within the termination grace period: {codes}"
    )


async def test_each_readiness_probe_is_answered_serving(deployed: dict[str, Deployed]) -> None:
    for service in deployed.values():
        probes = {
            kind: service.container[f"{kind}Probe"]["grpc"] for kind in ("startup", "readiness", "liveness")
        }
        ports = {port["name"]: port["containerPort"] for port in service.container["ports"]}
        for probe in probes.values():
            # The port each probe asks is the container's gRPC port, the one the config makes it listen on.
            assert probe["port"] == ports["grpc"] == service.config["grpc_port"], service.name
        assert probes["startup"]["service"] == probes["liveness"]["service"] == ""
        await assert_serving(service.plan.address, probes["readiness"]["service"])


def test_each_service_serves_metrics_and_readiness_on_its_http_port(deployed: dict[str, Deployed]) -> None:
    for service in deployed.values():
        ports = {port["name"]: port["containerPort"] for port in service.container["ports"]}
        assert ports["http"] == service.config["http_port"]
        status, body = http_get(service.plan.http_port, "/metrics")
        assert status == 200 and b"briefxai_" in body, service.name
        assert http_get(service.plan.http_port, "/readyz")[0] == 200, service.name


def _helm_test_commands(manifests: list[Manifest], deployed: dict[str, Deployed]) -> dict[str, list[str]]:
    """Each `helm test` container's command (its ``python`` being this interpreter), with the Service's
    host and port replaced by the local process's."""
    (pod,) = [m.body for m in manifests if m.kind == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    commands = {}
    for container in pod["spec"]["containers"]:
        service = deployed[container["name"]]
        command = list(container["command"])
        assert command[:3] == ["python", "-m", "briefxai_common.healthcheck"]
        host, port = command.index("--host") + 1, command.index("--port") + 1
        assert command[host] == f"briefxai-{service.name}.{NAMESPACE}.svc.cluster.local"
        assert command[port] == str(service.config["grpc_port"])
        command[0], command[host], command[port] = sys.executable, "127.0.0.1", str(service.plan.grpc_port)
        commands[service.name] = command
    return commands


def test_the_helm_test_pod_passes(manifests: list[Manifest], deployed: dict[str, Deployed]) -> None:
    commands = _helm_test_commands(manifests, deployed)
    assert sorted(commands) == sorted(SERVICES)
    for name, command in commands.items():
        readiness = deployed[name].container["readinessProbe"]["grpc"]["service"]
        assert command[command.index("--service") + 1] == readiness
        ran = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert ran.returncode == 0 and f"{readiness}: SERVING" in ran.stderr, ran.stderr


def test_the_helm_test_pod_fails_on_a_service_not_served(
    manifests: list[Manifest], deployed: dict[str, Deployed]
) -> None:
    command = _helm_test_commands(manifests, deployed)["embedding"]
    command[command.index("--service") + 1] = "briefxai.unknown.v1.UnknownService"
    ran = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert ran.returncode == 1 and "NOT_FOUND" in ran.stderr, ran.stderr
