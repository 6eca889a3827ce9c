"""The chart's service token and TLS values: the token reaches all four Deployments from a Secret (made by
the chart unless one is named); with ``tls.enabled`` every service's config gets its tls settings from the
mounted Secret (mTLS on the workers), the probes and scrapes use HTTPS, and the `helm test` pod's check,
run against a real service configured as the chart configures it, passes over mTLS."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from briefxai_clustering.server import build_service
from briefxai_clustering.settings import ClusteringSettings
from briefxai_common.bootstrap import start_service
from briefxai_common.config import ServiceSettings
from briefxai_embedding.settings import EmbeddingSettings
from briefxai_facets.settings import FacetsSettings
from briefxai_gateway.settings import GatewaySettings
from tests.deploy.chart import SERVICES, WORKERS, Manifest, lint, render, validate
from tests.support.certs import make_certificates

TLS_DIR = "/etc/briefxai-tls"
TLS = {"tls": {"enabled": True, "existingSecret": "briefxai-tls"}}
SETTINGS: dict[str, type[ServiceSettings]] = {
    "gateway": GatewaySettings,
    "embedding": EmbeddingSettings,
    "facets": FacetsSettings,
    "clustering": ClusteringSettings,
}


def one(manifests: list[Manifest], kind: str, name: str) -> dict[str, Any]:
    found = [m.body for m in manifests if m.kind == kind and m.name == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def container(manifests: list[Manifest], service: str) -> dict[str, Any]:
    pod = one(manifests, "Deployment", f"briefxai-{service}")["spec"]["template"]["spec"]
    (only,) = pod["containers"]
    return dict(only)


def config_text(manifests: list[Manifest]) -> str:
    return str(one(manifests, "ConfigMap", "briefxai-config")["data"]["briefxai.yaml"])


def env_of(body: dict[str, Any]) -> dict[str, Any]:
    return {variable["name"]: variable for variable in body.get("env", [])}


@pytest.fixture(scope="module")
def tls_manifests() -> list[Manifest]:
    return render(TLS)


def test_every_service_gets_the_token_from_the_charts_secret() -> None:
    manifests = render({})
    secret = one(manifests, "Secret", "briefxai-service-token")
    assert len(secret["data"]["service-token"]) >= 48
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for service in SERVICES:
        variable = env_of(container(manifests, service))[f"BRIEFXAI_{service.upper()}_SERVICE_TOKEN"]
        assert variable["valueFrom"]["secretKeyRef"] == {
            "name": "briefxai-service-token",
            "key": "service-token",
        }, service
        assert "tls" not in yaml.safe_load(config_text(manifests))[service]


def test_a_named_secret_replaces_the_charts() -> None:
    manifests = render({"serviceToken": {"existingSecret": "ours", "key": "token"}})
    assert "briefxai-service-token" not in {m.name for m in manifests if m.kind == "Secret"}
    for service in SERVICES:
        variable = env_of(container(manifests, service))[f"BRIEFXAI_{service.upper()}_SERVICE_TOKEN"]
        assert variable["valueFrom"]["secretKeyRef"] == {"name": "ours", "key": "token"}


def test_tls_values_lint_and_render_valid_manifests(tls_manifests: list[Manifest]) -> None:
    assert lint(TLS) == []
    with_monitor = TLS | {"metrics": {"serviceMonitor": {"enabled": True}}}
    assert lint(with_monitor) == []
    manifests = render(with_monitor)
    assert validate(manifests) == []
    (endpoint,) = one(manifests, "ServiceMonitor", "briefxai")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"


def test_tls_without_its_secret_is_refused() -> None:
    bad = {"tls": {"enabled": True}}
    assert any("existingSecret" in problem for problem in lint(bad)), lint(bad)
    with pytest.raises(helm.HelmError, match="existingSecret"):
        render(bad)


def test_tls_wires_each_services_settings_mounts_and_probes(tls_manifests: list[Manifest]) -> None:
    config = yaml.safe_load(config_text(tls_manifests))
    files = {
        "cert_file": f"{TLS_DIR}/tls.crt",
        "key_file": f"{TLS_DIR}/tls.key",
        "ca_file": f"{TLS_DIR}/ca.crt",
    }
    assert config["gateway"]["tls"] == files
    for worker in WORKERS:
        assert config[worker]["tls"] == files | {"client_ca_file": f"{TLS_DIR}/ca.crt"}, worker
    for service in SERVICES:
        body = container(tls_manifests, service)
        pod = one(tls_manifests, "Deployment", f"briefxai-{service}")["spec"]["template"]
        mounts = {m["name"]: m for m in body["volumeMounts"]}
        assert mounts["tls"] == {"name": "tls", "mountPath": TLS_DIR, "readOnly": True}
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert volumes["tls"]["secret"] == {"secretName": "briefxai-tls"}
        probes = {kind: body[f"{kind}Probe"]["httpGet"] for kind in ("startup", "readiness", "liveness")}
        assert probes == {
            "startup": {"path": "/readyz", "port": "http", "scheme": "HTTPS"},
            "readiness": {"path": "/readyz", "port": "http", "scheme": "HTTPS"},
            "liveness": {"path": "/livez", "port": "http", "scheme": "HTTPS"},
        }, service
        assert pod["metadata"]["annotations"]["prometheus.io/scheme"] == "https"
    one_way = yaml.safe_load(config_text(render({"tls": TLS["tls"] | {"mutual": False}})))
    assert all("client_ca_file" not in one_way[worker]["tls"] for worker in WORKERS)


def test_the_rendered_tls_settings_load_into_every_service(
    tls_manifests: list[Manifest], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    certs = make_certificates(tmp_path / "tls")
    for name, source in (("tls.crt", certs.server.cert), ("tls.key", certs.server.key), ("ca.crt", certs.ca)):
        (tmp_path / "tls" / name).write_bytes(source.read_bytes())
    path = tmp_path / "briefxai.yaml"
    path.write_text(config_text(tls_manifests).replace(TLS_DIR, str(tmp_path / "tls")))
    for name in [name for name in os.environ if name.startswith("BRIEFXAI_")]:
        monkeypatch.delenv(name)
    for service, settings_class in SETTINGS.items():
        settings = settings_class.load(path)
        assert settings.tls.enabled and settings.tls.calls_secure, service
        assert bool(settings.tls.client_ca_file) == (service != "gateway"), service


async def test_the_helm_test_check_passes_over_mtls(tls_manifests: list[Manifest], tmp_path: Path) -> None:
    """The clustering service configured from the rendered config (files moved to a temporary folder), and
    the `helm test` pod's clustering container's command and environment pointed at it."""
    certs = make_certificates(tmp_path / "tls")
    tls = yaml.safe_load(config_text(tls_manifests))["clustering"]["tls"]
    local = {
        key: str(
            {"tls.crt": certs.server.cert, "tls.key": certs.server.key, "ca.crt": certs.ca}[Path(value).name]
        )
        for key, value in tls.items()
    }
    settings = ClusteringSettings.load(
        host="127.0.0.1", grpc_port=0, http_port=0, warm_up_map=False, compute_threads=1, tls=local
    )
    running = await start_service(build_service(settings))
    try:
        (pod,) = [m.body for m in tls_manifests if m.kind == "Pod"]
        (check,) = [c for c in pod["spec"]["containers"] if c["name"] == "clustering"]
        command = list(check["command"])
        command[0] = sys.executable
        command[command.index("--host") + 1] = "127.0.0.1"
        command[command.index("--port") + 1] = str(running.grpc_port)
        command += ["--server-name", "localhost"]  # the test certificate names localhost, not the Service
        env = dict(os.environ)
        for variable in check["env"]:
            env[variable["name"]] = str(local[variable["name"].split("TLS__", 1)[1].lower()])
        ran = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=60, check=False, env=env
        )
        assert ran.returncode == 0 and "SERVING" in ran.stderr, ran.stderr
        assert check["volumeMounts"] == [{"name": "tls", "mountPath": TLS_DIR, "readOnly": True}]
    finally:
        await running.stop(grace=0)
