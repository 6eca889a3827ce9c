"""The Helm chart, offline: `helm lint --strict` and `helm template` (Helm v4's SDK) with the default and
the production values, every manifest against the Kubernetes schemas, bad values refused, and what the
manifests promise checked against the code they deploy: the settings models load the rendered config,
the store URL Secret reaches the gateway's setting, the alert rules pass promtool's unit tests.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from briefxai_clustering.settings import ClusteringSettings
from briefxai_common.config import ServiceSettings
from briefxai_common.tracing import export_plan
from briefxai_embedding.settings import EmbeddingSettings
from briefxai_facets.settings import FacetsSettings
from briefxai_gateway.settings import GatewaySettings
from tests.deploy.chart import (
    NAMESPACE,
    PRODUCTION_VALUES,
    SERVICES,
    WORKERS,
    Manifest,
    container_env,
    lint,
    load_values,
    render,
    validate,
)
from tests.observability.support import ALERT_RULES, ALERT_TESTS, ALERTS, DASHBOARD, promtool

SETTINGS: dict[str, type[ServiceSettings]] = {
    "gateway": GatewaySettings,
    "embedding": EmbeddingSettings,
    "facets": FacetsSettings,
    "clustering": ClusteringSettings,
}
VALUES = {"default": None, "production": PRODUCTION_VALUES}


@pytest.fixture(scope="module", params=sorted(VALUES))
def values(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load_values(VALUES[request.param])


@pytest.fixture(scope="module")
def manifests(values: dict[str, Any]) -> list[Manifest]:
    return render(values)


@pytest.fixture(scope="module")
def production() -> list[Manifest]:
    return render(load_values(PRODUCTION_VALUES))


def one(manifests: list[Manifest], kind: str, name: str) -> dict[str, Any]:
    found = [m.body for m in manifests if m.kind == kind and m.name == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def deployment(manifests: list[Manifest], service: str) -> dict[str, Any]:
    return one(manifests, "Deployment", f"briefxai-{service}")


def config_file(manifests: list[Manifest]) -> dict[str, Any]:
    """The services' configuration file, from the ConfigMap that holds it."""
    (text,) = [
        m.body["data"]["briefxai.yaml"]
        for m in manifests
        if m.kind == "ConfigMap" and m.name.endswith("-config")
    ]
    document: dict[str, Any] = yaml.safe_load(text)
    return document


def pods(manifests: list[Manifest]) -> list[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every Deployment's template and of the `helm test` pod."""
    specs = [(m.name, m.body["spec"]["template"]["spec"]) for m in manifests if m.kind == "Deployment"]
    return specs + [(m.name, m.body["spec"]) for m in manifests if m.kind == "Pod"]


# -- lint, render, schemas -------------------------------------------------------------------------


def test_helm_lint_strict_passes(values: dict[str, Any]) -> None:
    assert lint(values) == []


def test_every_manifest_is_valid_for_kubernetes(manifests: list[Manifest]) -> None:
    assert validate(manifests) == []
    kinds = {m.kind for m in manifests}
    assert {"ConfigMap", "Deployment", "Service", "ServiceAccount", "PodDisruptionBudget", "Pod"} <= kinds


@pytest.mark.parametrize(
    ("field", "value", "complaint"),
    [
        (
            "readinessProbe",
            {"grpc": {"port": "grpc"}},
            "readinessProbe.grpc.port: 'grpc' is not of type 'integer'",
        ),
        ("securityContext", {"readOnlyRootFS": True}, "'readOnlyRootFS' was unexpected"),
    ],
)
def test_the_validation_catches_a_broken_manifest(
    manifests: list[Manifest], field: str, value: dict[str, Any], complaint: str
) -> None:
    broken = json.loads(json.dumps(deployment(manifests, "gateway")))
    broken["spec"]["template"]["spec"]["containers"][0][field] = value
    problems = validate([Manifest("broken", broken)])
    assert len(problems) == 2 and all(complaint in problem for problem in problems), problems


BAD_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "negative replicas": ({"embedding": {"replicas": -1}}, "/embedding/replicas"),
    "several gateways on SQLite": ({"gateway": {"replicas": 3}}, "/gateway/replicas"),
    "autoscaled gateway on SQLite": ({"gateway": {"autoscaling": {"enabled": True}}}, "/gateway/autoscaling"),
    "PostgreSQL without its Secret": ({"gateway": {"store": {"type": "postgresql"}}}, "existingSecret"),
    "a chart-managed config key": ({"facets": {"config": {"grpc_port": 1234}}}, "/facets/config/grpc_port"),
    "autoscaling without a target": (
        {"facets": {"autoscaling": {"enabled": True, "targetCPUUtilizationPercentage": None}}},
        "/facets/autoscaling",
    ),
    "an unknown value": ({"gateway": {"replica": 2}}, "/gateway/replica"),
    "a port out of range": ({"clustering": {"ports": {"grpc": 70000}}}, "/clustering/ports/grpc"),
    "an unknown store": ({"gateway": {"store": {"type": "mysql"}}}, "/gateway/store/type"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_are_refused_by_lint_and_template(case: str) -> None:
    bad, where = BAD_VALUES[case]
    problems = lint(bad)
    assert any(where in problem for problem in problems), problems
    with pytest.raises(helm.HelmError, match=where):
        render(bad)


def test_postgresql_allows_several_gateways() -> None:
    values = {
        "gateway": {"replicas": 3, "store": {"type": "postgresql", "postgresql": {"existingSecret": "db"}}}
    }
    assert lint(values) == []
    assert deployment(render(values), "gateway")["spec"]["replicas"] == 3


# -- what the manifests promise --------------------------------------------------------------------


def test_the_config_file_loads_into_every_service_settings(
    manifests: list[Manifest], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "briefxai.yaml"
    path.write_text(yaml.safe_dump(config_file(manifests)))
    for name in [name for name in os.environ if name.startswith("BRIEFXAI_")]:
        monkeypatch.delenv(name)
    for service, settings_class in SETTINGS.items():
        container = deployment(manifests, service)["spec"]["template"]["spec"]["containers"][0]
        settings = settings_class.load(path)
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert (settings.grpc_port, settings.http_port) == (ports["grpc"], ports["http"]), service
        grace = deployment(manifests, service)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > settings.grace_period_seconds, service  # the pod is not killed while it drains


def test_probes_ask_grpc_health_on_the_grpc_port(manifests: list[Manifest]) -> None:
    expected = {
        "gateway": "briefxai.gateway.v1.AnalysisService",
        "embedding": "briefxai.embedding.v1.EmbeddingService",
        "facets": "briefxai.facets.v1.FacetsService",
        "clustering": "briefxai.clustering.v1.ClusteringService",
    }
    config = config_file(manifests)
    for service in SERVICES:
        container = deployment(manifests, service)["spec"]["template"]["spec"]["containers"][0]
        grpc_port = config[service]["grpc_port"]
        assert {"name": "grpc", "containerPort": grpc_port, "protocol": "TCP"} in container["ports"]
        probes = {kind: container[f"{kind}Probe"]["grpc"] for kind in ("startup", "readiness", "liveness")}
        assert probes == {
            "startup": {"port": grpc_port, "service": ""},
            "readiness": {"port": grpc_port, "service": expected[service]},
            "liveness": {"port": grpc_port, "service": ""},
        }, service


def test_every_pod_runs_locked_down(manifests: list[Manifest]) -> None:
    for name, pod in pods(manifests):
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["enableServiceLinks"] is False, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert "memory" in container["resources"]["limits"], name
    for service in SERVICES:
        spec = deployment(manifests, service)["spec"]["template"]["spec"]
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        mounts = {mount["mountPath"]: mount["name"] for mount in spec["containers"][0]["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], service  # noqa: S108  checks the chart's /tmp mount
        assert volumes[mounts["/etc/briefxai"]]["configMap"]["name"] == "briefxai-config", service
    service_account = one(manifests, "ServiceAccount", "briefxai")
    assert service_account["automountServiceAccountToken"] is False


def test_the_gateway_reaches_each_worker_through_its_headless_service(manifests: list[Manifest]) -> None:
    gateway = config_file(manifests)["gateway"]
    for worker in WORKERS:
        service = one(manifests, "Service", f"briefxai-{worker}")
        assert service["spec"]["clusterIP"] == "None", worker
        port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
        address = f"dns:///briefxai-{worker}.{NAMESPACE}.svc.cluster.local:{port}"
        assert gateway[f"{worker}_address"] == address
    service = one(manifests, "Service", "briefxai-gateway")
    assert service["spec"]["type"] == "ClusterIP"
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
        "grpc": gateway["grpc_port"],
        "http": gateway["http_port"],
    }


def test_services_select_their_deployments_pods_by_named_ports(manifests: list[Manifest]) -> None:
    for service in SERVICES:
        selector = one(manifests, "Service", f"briefxai-{service}")["spec"]
        template = deployment(manifests, service)["spec"]["template"]
        assert selector["selector"].items() <= template["metadata"]["labels"].items(), service
        names = {port["name"] for port in template["spec"]["containers"][0]["ports"]}
        assert {port["targetPort"] for port in selector["ports"]} <= names, service


def test_scrape_annotations_name_each_services_http_port(manifests: list[Manifest]) -> None:
    config = config_file(manifests)
    for service in SERVICES:
        annotations = deployment(manifests, service)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(config[service]["http_port"])
        assert annotations["prometheus.io/path"] == "/metrics"
        assert config[service]["metrics_enabled"] is True


def test_sqlite_keeps_one_gateway_on_a_volume() -> None:
    manifests = render({})
    spec = deployment(manifests, "gateway")["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    store_url = container_env(pod["containers"][0], {})["BRIEFXAI_GATEWAY_STORE_URL"]
    assert store_url.startswith("sqlite:////") and "store_url" not in config_file(manifests)["gateway"]
    directory = store_url.removeprefix("sqlite:///").rsplit("/", 1)[0]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == directory)
    claim = next(v for v in pod["volumes"] if v["name"] == mount["name"])["persistentVolumeClaim"][
        "claimName"
    ]
    assert one(manifests, "PersistentVolumeClaim", claim)["spec"]["resources"]["requests"]["storage"] == "1Gi"


def test_postgresql_url_comes_from_the_secret_into_the_store_setting(
    production: list[Manifest], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = load_values(PRODUCTION_VALUES)["gateway"]["store"]["postgresql"]
    config = config_file(production)
    assert "store_url" not in config["gateway"]
    container = deployment(production, "gateway")["spec"]["template"]["spec"]["containers"][0]
    (variable,) = [v for v in container["env"] if v["name"] == "BRIEFXAI_GATEWAY_STORE_URL"]
    assert variable["valueFrom"]["secretKeyRef"] == {"name": values["existingSecret"], "key": values["key"]}
    path = tmp_path / "briefxai.yaml"
    path.write_text(yaml.safe_dump(config))
    url = "postgresql+psycopg://briefxai@db:5432/briefxai"
    monkeypatch.setenv(variable["name"], url)
    assert GatewaySettings.load(path).store_url == url
    spec = deployment(production, "gateway")["spec"]
    assert "replicas" not in spec and "strategy" not in spec
    assert not any(m.kind == "PersistentVolumeClaim" for m in production)
    hpa = one(production, "HorizontalPodAutoscaler", "briefxai-gateway")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "briefxai-gateway",
    }


def test_only_the_gateway_and_the_test_pod_reach_the_workers(production: list[Manifest]) -> None:
    gateway_labels = deployment(production, "gateway")["spec"]["template"]["metadata"]["labels"]
    test_labels = next(m.body for m in production if m.kind == "Pod")["metadata"]["labels"]
    for worker in WORKERS:
        policy = one(production, "NetworkPolicy", f"briefxai-{worker}")["spec"]
        assert policy["podSelector"]["matchLabels"].items() <= (
            deployment(production, worker)["spec"]["template"]["metadata"]["labels"].items()
        )
        (grpc_rule,) = [r for r in policy["ingress"] if {"port": "grpc", "protocol": "TCP"} in r["ports"]]
        peers = [peer["podSelector"]["matchLabels"] for peer in grpc_rule["from"]]
        assert len(peers) == 2
        assert peers[0].items() <= gateway_labels.items() and peers[1].items() <= test_labels.items()
        assert not any(
            peer.items() <= labels.items()
            for peer in peers
            for labels in [
                deployment(production, other)["spec"]["template"]["metadata"]["labels"] for other in WORKERS
            ]
        )


def test_traces_are_exported_to_the_configured_collector(production: list[Manifest]) -> None:
    endpoint = load_values(PRODUCTION_VALUES)["tracing"]["otlpEndpoint"]
    for service in SERVICES:
        container = deployment(production, service)["spec"]["template"]["spec"]["containers"][0]
        env = container_env(
            container, {"metadata.name": f"briefxai-{service}-0", "metadata.namespace": NAMESPACE}
        )
        plan = export_plan(environ=env)
        assert plan is not None and plan.protocol == "grpc" and not plan.tls
        assert plan.endpoint == endpoint.removeprefix("http://")
        attributes = dict(item.split("=", 1) for item in env["OTEL_RESOURCE_ATTRIBUTES"].split(","))
        assert attributes["k8s.pod.name"] == f"briefxai-{service}-0"
        assert attributes["k8s.namespace.name"] == NAMESPACE


def test_the_prometheus_rule_is_the_alert_file_and_passes_its_unit_tests(
    production: list[Manifest], tmp_path: Path
) -> None:
    spec = one(production, "PrometheusRule", "briefxai")["spec"]
    assert spec == yaml.safe_load(ALERT_RULES.read_text())
    (tmp_path / ALERT_RULES.name).write_text(yaml.safe_dump(spec))
    shutil.copy(ALERT_TESTS, tmp_path / ALERT_TESTS.name)
    checked = promtool("check", "rules", ALERT_RULES.name, cwd=tmp_path)
    assert checked.returncode == 0 and f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout, checked.stderr
    tested = promtool("test", "rules", ALERT_TESTS.name, cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_service_monitor_gives_targets_the_labels_alerts_select_on(production: list[Manifest]) -> None:
    spec = one(production, "ServiceMonitor", "briefxai")["spec"]
    assert spec["jobLabel"] == "app.kubernetes.io/component"
    for service in SERVICES:
        labels = one(production, "Service", f"briefxai-{service}")["metadata"]["labels"]
        assert labels[spec["jobLabel"]] == service
    (endpoint,) = spec["endpoints"]
    assert endpoint["honorLabels"] is True
    assert {"targetLabel": "app", "replacement": "briefxai"} in endpoint["relabelings"]
    assert all(
        'app="briefxai"' in rule["expr"]
        for group in yaml.safe_load(ALERT_RULES.read_text())["groups"]
        for rule in group["rules"]
    )


def test_the_dashboard_config_map_is_the_dashboard(production: list[Manifest]) -> None:
    config_map = one(production, "ConfigMap", "briefxai-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["briefxai-dashboard.json"]) == json.loads(DASHBOARD.read_text())


def test_optional_parts_are_off_by_default() -> None:
    manifests = render({})
    kinds = {m.kind for m in manifests}
    assert not kinds & {"HorizontalPodAutoscaler", "NetworkPolicy", "ServiceMonitor", "PrometheusRule"}
    assert "briefxai-dashboard" not in {m.name for m in manifests}


def test_every_option_renders_valid_manifests() -> None:
    """The knobs the default and production values leave alone, all turned at once."""
    values = {
        "fullnameOverride": "bx",
        "image": {"registry": "registry.example.com/", "tag": "1.2.3", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "serviceAccount": {"create": False, "name": "runner"},
        "metrics": {"enabled": False, "serviceMonitor": {"enabled": True}},
        "grafanaDashboard": {"enabled": True, "labels": {"dashboards": "briefxai"}},
        "tracing": {"otlpEndpoint": "otel:4318", "protocol": "http/protobuf"},
        "networkPolicy": {"enabled": True, "gatewayFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
        "gateway": {
            "image": {"tag": "1.2.4"},
            "service": {"type": "LoadBalancer", "annotations": {"example.com/lb": "internal"}},
            "store": {"sqlite": {"persistence": {"existingClaim": "gateway-db"}}},
            "podAnnotations": {"example.com/team": "data"},
            "podLabels": {"team": "data"},
            "nodeSelector": {"kubernetes.io/arch": "amd64"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "briefxai", "effect": "NoSchedule"}
            ],
        },
        "embedding": {"autoscaling": {"enabled": True, "targetMemoryUtilizationPercentage": 80}},
        "facets": {
            "podDisruptionBudget": {"enabled": False},
            "env": [{"name": "OPENAI_API_KEY", "value": "k"}],
        },
        "clustering": {"podDisruptionBudget": {"maxUnavailable": "50%"}},
    }
    assert lint(values) == []
    manifests = render(values)
    assert validate(manifests) == []
    names = {(m.kind, m.name) for m in manifests}
    assert ("PersistentVolumeClaim", "bx-gateway-data") not in names and (
        "ServiceAccount",
        "runner",
    ) not in names
    assert ("PodDisruptionBudget", "bx-facets") not in names and ("ServiceMonitor", "bx") not in names
    gateway = one(manifests, "Deployment", "bx-gateway")["spec"]["template"]
    assert gateway["spec"]["containers"][0]["image"] == "registry.example.com/briefxai/gateway:1.2.4"
    assert one(manifests, "Deployment", "bx-facets")["spec"]["template"]["spec"]["containers"][0][
        "image"
    ] == ("registry.example.com/briefxai/facets:1.2.3")
    assert "prometheus.io/scrape" not in gateway["metadata"]["annotations"]
    assert gateway["metadata"]["annotations"]["example.com/team"] == "data"
    assert config_file(manifests)["gateway"]["metrics_enabled"] is False
    volumes = {v["name"]: v for v in gateway["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "gateway-db"}
