"""The gateway's Prometheus metrics (default registry, served on the HTTP side port's /metrics).

- ``briefxai_analyses_total{state}``: analyses that entered a state: ``pending`` when accepted,
  then ``succeeded``, ``failed`` or ``cancelled``.
- ``briefxai_conversations_processed_total{stage}``: conversations through ``facets``, ``embed``,
  ``cluster``, ``store`` (resumed batches that were already done are not counted again).
- ``briefxai_stage_seconds{stage}``: seconds per unit of work: one batch for ``facets``/``embed``,
  one analysis for ``validate``, ``cluster`` and ``store``.
- ``briefxai_circuit_breaker_state{service}``: 0 closed, 1 open, 2 half-open, read at scrape time.
- ``briefxai_analyses_running``: analyses whose pipeline is running in this process.
- ``briefxai_downstream_retries_total{service}``: retried downstream attempts.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from briefxai_common.resilience import CircuitBreaker

ANALYSES_TOTAL = Counter("briefxai_analyses_total", "Analyses that entered a state.", ["state"])
CONVERSATIONS_PROCESSED = Counter(
    "briefxai_conversations_processed_total", "Conversations processed per pipeline stage.", ["stage"]
)
STAGE_SECONDS = Histogram(
    "briefxai_stage_seconds",
    "Seconds per unit of work of a stage (a batch for facets/embed, an analysis otherwise).",
    ["stage"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0),
)
CIRCUIT_BREAKER_STATE = Gauge(
    "briefxai_circuit_breaker_state", "Circuit breaker state: 0 closed, 1 open, 2 half-open.", ["service"]
)
ANALYSES_RUNNING = Gauge("briefxai_analyses_running", "Analyses whose pipeline is running in this process.")
DOWNSTREAM_RETRIES = Counter(
    "briefxai_downstream_retries_total", "Retried downstream call attempts.", ["service"]
)


def watch_breaker(breaker: CircuitBreaker) -> None:
    """Exports ``breaker``'s state as ``briefxai_circuit_breaker_state{service=<name>}``, read at scrape."""
    CIRCUIT_BREAKER_STATE.labels(service=breaker.name).set_function(lambda: float(breaker.state.value))
