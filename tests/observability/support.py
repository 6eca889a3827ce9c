"""Helpers for the observability tests: the deploy/ files, Prometheus's binaries, metric names.

- :func:`binary` finds ``prometheus``/``promtool`` or fails the test saying how to install them (CI
  installs Debian's ``prometheus`` package in ``.ci/run``; these tests are not skipped without it).
- :func:`metric_names` lists the metric names a PromQL expression reads; :func:`exposed_names` the
  sample names a Prometheus text exposition (a service's ``/metrics``) can produce.
- :class:`Prometheus` runs a real Prometheus on a free port with a given config and reads its HTTP API.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERT_RULES = DEPLOY / "prometheus" / "alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "briefxai-dashboard.json"

ALERTS = (
    "ServiceDown",
    "BreakerOpen",
    "HighErrorRate",
    "ErrorsPersisting",
    "MemoryGrowing",
    "AnalysesStuck",
    "SecurityEvent",
)

# The reference's metric names (issue 12), the existing gateway counter the stuck-analyses alert reads,
# the security events (issue 13) and `up` (Prometheus's own per-target series). Histograms count with
# their sample suffixes.
REFERENCE_METRICS = {
    "briefxai_operations_total": "counter",
    "briefxai_operation_duration_seconds": "histogram",
    "briefxai_memory_usage_bytes": "gauge",
    "briefxai_active_sessions": "gauge",
    "briefxai_errors_total": "counter",
    "briefxai_circuit_breaker_state": "gauge",
    "briefxai_conversations_processed_total": "counter",
    "briefxai_security_events_total": "counter",
    "up": "gauge",
}

# Grafana's variables, replaced by values a plain PromQL parser accepts.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$job": ".*",
}

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gauge": (),
    "info": ("_info",),
    "stateset": (),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "unknown": (),
}
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "atan2",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(\s*\()?")


def binary(name: str) -> str:
    """The path of ``name``; fails the test when it is not installed (never skips)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed: install Debian's prometheus package (apt-get install prometheus), "
            "as .ci/run does; the observability tests need the real prometheus and promtool",
            pytrace=False,
        )
    return path


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def substitute_variables(expr: str) -> str:
    """``expr`` with Grafana's variables replaced (longest names first)."""
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not its functions, keywords or label names)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def exposed_names(exposition: str) -> set[str]:
    """Sample names a text exposition has or declares: sample lines, and ``# TYPE`` families with the
    suffixes of their type (a labelled family with no series yet shows only its HELP and TYPE)."""
    names = set()
    for line in exposition.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(maxsplit=3)
            names.add(family)
            names.update(family + suffix for suffix in _SUFFIXES.get(kind, ()))
        elif not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def reference_names() -> set[str]:
    """:data:`REFERENCE_METRICS` with the sample suffixes of their types."""
    names = set()
    for name, kind in REFERENCE_METRICS.items():
        names.add(name)
        names.update(name + suffix for suffix in _SUFFIXES[kind])
    return names


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def dashboard_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included; rows themselves excluded."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def dashboard_exprs(dashboard: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(where, expr)`` for every panel target: where is ``"<panel title> [<refId>]"``."""
    found = []
    for panel in dashboard_panels(dashboard):
        for target in panel.get("targets", []):
            found.append((f"{panel.get('title')} [{target.get('refId')}]", str(target.get("expr", ""))))
    return found


def alert_rules() -> list[dict[str, Any]]:
    import yaml

    groups = yaml.safe_load(ALERT_RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


class Prometheus:
    """A real Prometheus process on 127.0.0.1, storing into ``data_dir``; a context manager."""

    def __init__(self, config: Path, data_dir: Path) -> None:
        self.config = config
        self.data_dir = data_dir
        self.port = free_port()
        self.log_path = data_dir / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Prometheus:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> None:
        storage = self.data_dir / "tsdb"
        storage.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    binary("prometheus"),
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={storage}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            code = self.process.poll()
            if code is not None:
                raise AssertionError(f"prometheus exited with code {code}:\n{self.log_tail()}")
            if self._ready():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"prometheus not ready after {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.25)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:  # noqa: S310  our own http:// URL
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def api(self, path: str, **params: str) -> Any:
        """``data`` of a GET on the HTTP API (``/api/v1/<path>``); fails on an error answer."""
        query = urllib.parse.urlencode(params)
        url = f"{self.url}/api/v1/{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310  our own http:// URL
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:
            body = json.loads(error.read() or b"{}")
        assert body.get("status") == "success", f"GET {url}: {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to now."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", f"{expr}: {data['resultType']}"
        result: list[dict[str, Any]] = data["result"]
        return result

    def scalar(self, expr: str) -> float:
        """The single value of ``expr`` (wrap it in ``sum(...) or vector(0)`` for absent series)."""
        result = self.query(expr)
        assert len(result) == 1, f"{expr}: expected one series, got {result}"
        return float(result[0]["value"][1])
