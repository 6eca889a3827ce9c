"""The gateway's Prometheus metrics (default registry, served on the HTTP side port's /metrics).

- ``briefxai_analyses_total{state}``: analyses that entered a state: ``pending`` when accepted,
  then ``succeeded``, ``failed`` or ``cancelled``.
- ``briefxai_conversations_processed_total{stage}``: conversations through ``facets``, ``embed``,
  ``cluster``, ``store`` (resumed batches that were already done are not counted again).
- ``briefxai_stage_seconds{stage}``: seconds per unit of work: one batch for ``facets``/``embed``,
  one analysis for ``validate``, ``cluster`` and ``store``; one AssignConversations call for
  ``assign`` (its assignment and store step), one analysis's base centroids for ``centroids``.
- ``briefxai_analyses_running``: analyses whose pipeline is running in this process.
- ``briefxai_analyses_queued``: analyses waiting for a slot (the queue depth), read at scrape time.
- ``briefxai_downstream_retries_total{service}``: retried downstream attempts (``service``: the
  downstream).
- ``briefxai_conversations_withheld_total``: conversations withheld by the privacy rule (too few
  conversations or distinct users in their cluster), counted when an analysis's results are stored.

And the shared series (``briefxai_common.service_metrics``) with ``service="gateway"``: each pipeline
stage as ``briefxai_operation_duration_seconds{operation="stage_<stage>"}`` (with status OK in
``briefxai_operations_total`` when it completes), each store call as ``store_<method>`` (OK,
ALREADY_EXISTS for a repeated request id, INTERNAL with ``errors_total{kind="store"}``), downstream
failures as ``errors_total{kind="downstream"}``, analyses running + queued as the active sessions,
and the downstream breakers as ``briefxai_circuit_breaker_state{service="gateway",breaker=<downstream>}``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram

from briefxai_common import service_metrics
from briefxai_common.resilience import CircuitBreaker, Retrier

SERVICE = "gateway"
DOWNSTREAM_SERVICES = ("facets", "embedding", "clustering")
STAGES = ("validate", "facets", "embed", "cluster", "store")
STATES = ("pending", "succeeded", "failed", "cancelled")
C = TypeVar("C", bound=type)

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
ANALYSES_RUNNING = Gauge("briefxai_analyses_running", "Analyses whose pipeline is running in this process.")
DOWNSTREAM_RETRIES = Counter(
    "briefxai_downstream_retries_total", "Retried downstream call attempts.", ["service"]
)


ANALYSES_QUEUED = Gauge("briefxai_analyses_queued", "Analyses waiting for a slot (queue depth).")
CONVERSATIONS_WITHHELD = Counter(
    "briefxai_conversations_withheld_total",
    "Conversations withheld by the privacy rule, counted when the results are stored.",
)

for _state in STATES:
    ANALYSES_TOTAL.labels(state=_state)
for _downstream in DOWNSTREAM_SERVICES:
    DOWNSTREAM_RETRIES.labels(service=_downstream)
service_metrics.declare(
    SERVICE, operations=[f"stage_{stage}" for stage in STAGES], error_kinds=("downstream", "store")
)


def watch_breaker(breaker: CircuitBreaker) -> None:
    """Exports ``breaker``'s state as ``briefxai_circuit_breaker_state{service="gateway",breaker=<name>}``."""
    service_metrics.watch_breaker(SERVICE, breaker)


def watch_queue(running: Callable[[], int], queued: Callable[[], int]) -> None:
    """Queue depth and active sessions (running + queued analyses), read at scrape time."""
    ANALYSES_QUEUED.set_function(lambda: float(queued()))
    service_metrics.set_active_sessions(SERVICE, lambda: float(running() + queued()))


def observe_stage(stage: str, seconds: float) -> None:
    """A completed unit of work of a pipeline stage (``briefxai_stage_seconds`` and ``stage_<stage>``)."""
    STAGE_SECONDS.labels(stage=stage).observe(seconds)
    service_metrics.record_operation(SERVICE, f"stage_{stage}", "OK", seconds)


def count_downstream_error() -> None:
    """A downstream call that failed for good (retries spent, or its breaker open)."""
    service_metrics.count_error(SERVICE, "downstream")


def timed_store(expected: dict[type[BaseException], str]) -> Callable[[C], C]:
    """Class decorator: each public method of the store is recorded as ``store_<method>`` (iterators
    are not: their work happens while the caller reads them) and, when the store has a ``retrier``
    (the ``retry_policies.store`` policy), retried on transient database errors: each public method is
    one transaction, rolled back when it fails, so a retry redoes it whole. ``expected`` maps exception
    types that are normal outcomes to their status."""

    def wrap(method: Callable[..., Any], operation: str) -> Callable[..., Any]:
        @functools.wraps(method)
        def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
            with service_metrics.timed_operation(SERVICE, operation, expected=expected, failure_kind="store"):
                retrier: Retrier | None = getattr(self, "retrier", None)
                if retrier is None:
                    return method(self, *args, **kwargs)
                return retrier.call_sync(lambda: method(self, *args, **kwargs))

        return timed

    def decorate(cls: C) -> C:
        operations: list[str] = []
        for name, member in inspect.getmembers(cls, inspect.isfunction):
            static = isinstance(inspect.getattr_static(cls, name), staticmethod)
            if name.startswith("_") or static or inspect.isgeneratorfunction(member):
                continue
            operations.append(f"store_{name}")
            setattr(cls, name, wrap(member, f"store_{name}"))
        service_metrics.declare(
            SERVICE, operations=operations, statuses=("OK", *sorted(set(expected.values())), "INTERNAL")
        )
        return cls

    return decorate
