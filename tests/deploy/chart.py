"""The Helm chart (deploy/helm/briefxai) linted, rendered and validated offline; ``make helm-lint`` runs
``python -m tests.deploy.chart``, and the tests of tests/deploy use the same functions.

Helm itself comes from ``helm-python-sdk``: Helm v4's Go SDK as a shared library (``libhelm_c``) with a
Python API, so no ``helm`` binary is needed. ``lint`` is ``helm lint --strict``; ``render`` is
``helm template`` (values checked against values.schema.json first, as Helm does). Every rendered
manifest is validated against the Kubernetes OpenAPI schemas bundled by ``kubernetes-validate`` (strict:
unknown fields are errors) for the oldest Kubernetes the chart supports and the newest bundled. The
prometheus-operator kinds (ServiceMonitor, PrometheusRule) have no bundled schema; their structure is
checked here instead (:func:`custom_resource_problems`).

Command line::

    python -m tests.deploy.chart                    # lint + render + validate, default and production values
    python -m tests.deploy.chart template [-f FILE] # print the rendered manifests, as `helm template` does
"""

from __future__ import annotations

import argparse
import base64
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, latest_version

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "briefxai"
PRODUCTION_VALUES = CHART / "ci" / "production-values.yaml"
RELEASE = "briefxai"
NAMESPACE = "briefxai"
SERVICES = ("gateway", "embedding", "facets", "clustering")
WORKERS = ("embedding", "facets", "clustering")
# The chart's kubeVersion floor (Chart.yaml) and the newest schemas kubernetes-validate bundles.
KUBERNETES_VERSIONS = ("1.29", ".".join(latest_version().split(".")[:2]))
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}
LINT_WARNING = 2  # helm lint severities: 1 info, 2 warning, 3 error; --strict fails on warnings too


@dataclass(frozen=True)
class Manifest:
    """One rendered object and the template it came from."""

    source: str
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def name(self) -> str:
        return str(self.body.get("metadata", {}).get("name", ""))

    def __str__(self) -> str:
        return f"{self.kind}/{self.name} ({self.source})"


def load_values(path: Path | None) -> dict[str, Any]:
    """A values file as a mapping ({} for None: the chart's defaults)."""
    if path is None:
        return {}
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: values must be a mapping")
    return values


def lint(values: Mapping[str, Any], kube_version: str = KUBERNETES_VERSIONS[0]) -> list[str]:
    """``helm lint --strict`` findings that fail it (warnings and errors), as text; [] when it passes."""
    report = helm.lint(
        CHART, dict(values), strict=True, namespace=NAMESPACE, kube_version=f"v{kube_version}.0"
    )
    found = [
        f"[{message['path']}] {message['error'].strip()}"
        for message in report.get("messages", [])
        if message.get("severity", 0) >= LINT_WARNING
    ]
    return found or [str(error).strip() for error in report.get("errors", [])]


def render_text(values: Mapping[str, Any]) -> dict[str, str]:
    """``helm template``: template path → rendered text (NOTES.txt left out). Raises ``helm.HelmError``
    when the values break the schema or a template fails."""
    chart = helm.Chart.load(CHART)
    try:
        rendered = chart.render(dict(values), name=RELEASE, namespace=NAMESPACE, is_install=True)
    finally:
        chart.close()
    return {path: text for path, text in sorted(rendered.items()) if not path.endswith("NOTES.txt")}


def render(values: Mapping[str, Any]) -> list[Manifest]:
    """The rendered objects (the `helm test` hook included), parsed."""
    manifests = []
    for source, text in render_text(values).items():
        for document in yaml.safe_load_all(text):
            if document:
                manifests.append(Manifest(source, document))
    return manifests


def schema_problems(manifest: Manifest, version: str) -> list[str]:
    """What the Kubernetes ``version`` schema (strict) rejects in ``manifest``; [] when it is valid."""
    try:
        kubernetes_validate.validate(manifest.body, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(part) for part in error.path)
        return [f"{manifest}: Kubernetes {version}: {path}: {error.message}"]
    except SchemaNotFoundError as error:
        return [f"{manifest}: {error.message}"]
    return []


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels, matchExpressions In/NotIn/Exists) matches."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        value, operator = labels.get(expression["key"]), expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and value in expression["values"]:
            return False
        if operator == "Exists" and value is None:
            return False
        if operator == "DoesNotExist" and value is not None:
            return False
    return True


def custom_resource_problems(manifest: Manifest, manifests: Iterable[Manifest]) -> list[str]:
    """The prometheus-operator kinds, which no bundled schema covers: a ServiceMonitor must select the
    chart's four Services and scrape a port each of them names; a PrometheusRule needs groups of named
    rules, each an alert or a record with an expression (``promtool check rules`` in the tests goes
    further)."""
    body, problems = manifest.body, []
    if body.get("apiVersion") != "monitoring.coreos.com/v1":
        problems.append(f"{manifest}: apiVersion must be monitoring.coreos.com/v1")
    spec = body.get("spec") or {}
    if manifest.kind == "ServiceMonitor":
        services = [
            m
            for m in manifests
            if m.kind == "Service"
            and _selects(spec.get("selector", {}), m.body["metadata"].get("labels", {}))
        ]
        components = sorted(
            s.body["metadata"]["labels"].get("app.kubernetes.io/component", "") for s in services
        )
        if components != sorted(SERVICES):
            problems.append(f"{manifest}: selects the Services of {components}, not of {sorted(SERVICES)}")
        endpoints = spec.get("endpoints") or []
        if not endpoints:
            problems.append(f"{manifest}: no endpoints")
        for endpoint in endpoints:
            for service in services:
                names = [port.get("name") for port in service.body["spec"]["ports"]]
                if endpoint.get("port") not in names:
                    problems.append(f"{manifest}: port {endpoint.get('port')!r} is not a port of {service}")
    elif manifest.kind == "PrometheusRule":
        groups = spec.get("groups") or []
        if not groups:
            problems.append(f"{manifest}: no rule groups")
        for group in groups:
            if not group.get("name") or not group.get("rules"):
                problems.append(f"{manifest}: a group needs a name and rules: {group}")
            for rule in group.get("rules", []):
                if not (rule.get("alert") or rule.get("record")) or not rule.get("expr"):
                    problems.append(f"{manifest}: a rule needs alert or record, and expr: {rule}")
    return problems


def validate(manifests: list[Manifest], versions: Iterable[str] = KUBERNETES_VERSIONS) -> list[str]:
    """Every problem of the rendered set: Kubernetes schemas for the built-in kinds, structure for the
    prometheus-operator ones."""
    problems = []
    for manifest in manifests:
        if manifest.kind in CUSTOM_KINDS:
            problems += custom_resource_problems(manifest, manifests)
        else:
            for version in versions:
                problems += schema_problems(manifest, version)
    return problems


def container_env(container: Mapping[str, Any], pod: Mapping[str, str]) -> dict[str, str]:
    """A container's environment as Kubernetes gives it: ``value`` with ``$(NAME)`` references to earlier
    variables expanded, ``fieldRef`` from ``pod`` (``metadata.name`` → value); variables from Secrets or
    ConfigMaps are left out (the caller supplies those)."""
    env: dict[str, str] = {}
    for variable in container.get("env", []):
        name = variable["name"]
        if "value" in variable:
            env[name] = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                lambda match: env.get(match.group(1), match.group(0)),
                str(variable["value"]),
            )
        elif "fieldRef" in variable.get("valueFrom", {}):
            env[name] = pod[variable["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


def mounted_files(
    manifests: Iterable[Manifest], pod: Mapping[str, Any], container: Mapping[str, Any]
) -> dict[str, bytes]:
    """The files a container sees in its Secret, ConfigMap and projected volumes, path → content, as
    Kubernetes mounts them (each item at its path, or every key); objects the chart does not render (an
    ``existingSecret``) are left out."""
    objects = {(m.kind, m.name): m.body for m in manifests if m.kind in ("Secret", "ConfigMap")}
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    files: dict[str, bytes] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        sources = volume["projected"]["sources"] if "projected" in volume else [volume]
        for source in sources:
            for kind, field in (("Secret", "secret"), ("ConfigMap", "configMap")):
                if field not in source:
                    continue
                reference = source[field]
                body = objects.get((kind, reference.get("secretName") or reference.get("name")))
                if body is None:
                    continue
                data = {
                    key: base64.b64decode(value) if kind == "Secret" else str(value).encode()
                    for key, value in (body.get("data") or {}).items()
                }
                for item in reference.get("items") or [{"key": key, "path": key} for key in data]:
                    files[f"{mount['mountPath']}/{item['path']}"] = data[item["key"]]
    return files


def check(values_file: Path | None) -> list[str]:
    """Lint (for both Kubernetes versions), render and validate with one values file; prints progress."""
    label = values_file.relative_to(REPO) if values_file else "default values"
    values = load_values(values_file)
    problems = []
    for version in KUBERNETES_VERSIONS:
        found = lint(values, version)
        print(f"{label}: helm lint --strict (Kubernetes {version}): {'FAILED' if found else 'ok'}")
        problems += found
    try:
        manifests = render(values)
    except helm.HelmError as error:
        print(f"{label}: helm template: FAILED")
        return [*problems, f"helm template: {error}"]
    kinds = sorted({m.kind for m in manifests})
    print(f"{label}: helm template: {len(manifests)} objects ({', '.join(kinds)})")
    found = validate(manifests)
    custom = sorted({m.kind for m in manifests if m.kind in CUSTOM_KINDS})
    print(
        f"{label}: Kubernetes {' and '.join(KUBERNETES_VERSIONS)} schemas (strict): {'FAILED' if found else 'ok'}"
        + (f"; {', '.join(custom)}: no bundled schema (CRDs), structure checked instead" if custom else "")
    )
    return problems + found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.deploy.chart", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("check", help="lint, render and validate with the default and production values")
    template = commands.add_parser("template", help="print the rendered manifests")
    template.add_argument("-f", "--values", type=Path, default=None, help="a values file")
    arguments = parser.parse_args(argv)
    helm.disable_logging()
    if arguments.command == "template":
        try:
            rendered = render_text(load_values(arguments.values))
        except helm.HelmError as error:
            print(f"helm template: {error}", file=sys.stderr)
            return 1
        for source, text in rendered.items():
            print(f"---\n# Source: {source}\n{text.strip()}")
        return 0
    problems = check(None) + check(PRODUCTION_VALUES)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
