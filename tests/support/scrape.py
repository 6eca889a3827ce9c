"""Reading a service's Prometheus ``/metrics`` page (its HTTP side port) in tests and the soak."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

from tests.support.http import http_get


def metric_sum(http_port: int, name: str, labels: Mapping[str, str] | None = None) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (0 when there are none)."""
    status, body = http_get(http_port, "/metrics")
    if status != 200:
        raise AssertionError(f"GET /metrics on port {http_port} answered {status}")
    wanted = dict(labels or {})
    total = 0.0
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in wanted.items()):
                total += sample.value
    return total
