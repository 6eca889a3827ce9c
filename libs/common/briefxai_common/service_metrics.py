"""The metrics every BriefXAI service exports under the reference's names, labelled by ``service``.

No gRPC here (domain modules record into these); the bootstrap's gRPC side is in ``metrics.py``.

- ``briefxai_operations_total{service,operation,status}`` and the
  ``briefxai_operation_duration_seconds{service,operation}`` histogram: every RPC a service serves
  (``operation`` the method name, ``status`` the gRPC code name), and what services add themselves
  (the gateway's ``stage_<name>`` and ``store_<method>``), with status names from the same code table.
- ``briefxai_memory_usage_bytes{service}``: resident set size of the process, read at scrape time.
- ``briefxai_active_sessions{service}``: the service's own RPCs in flight, unless the service gives
  another source (:func:`set_active_sessions`; the gateway: analyses running + queued).
- ``briefxai_errors_total{service,kind}``: failed RPCs by kind (the lower-case code name; UNKNOWN
  and DATA_LOSS are ``internal``; OK and CANCELLED are not errors), plus service kinds such as the
  gateway's ``downstream`` and ``store`` and the facets service's ``llm``.
- ``briefxai_circuit_breaker_state{service,breaker}``: 0 closed, 1 open, 2 half-open, read at scrape;
  ``briefxai_circuit_breaker_transitions_total{service,breaker,from,to}``: its transitions.
- ``briefxai_retries_total{service,dependency}``: attempts retried (``briefxai_common.resilience``);
  ``briefxai_retries_denied_total{service,dependency,reason}``: retries not made because the retry
  ``budget`` was spent, the ``deadline`` was too near, or the server asked for a longer wait than the
  policy allows (``retry_after``).
- ``briefxai_failovers_total{service,from,to,outcome}``: work handed from a provider that failed it to
  the next one in a failover chain, by whether the next one served it (``ok``) or not (``failed``); the
  success rate of a failover is ``ok / (ok + failed)``.
- ``briefxai_event_loop_lag_seconds{service}``: how late ``asyncio.sleep`` wakes up, sampled every
  :data:`LAG_INTERVAL_SECONDS` while the service runs.

Series that operators alert on exist at 0 before the first event: :func:`declare` creates them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import psutil
from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from briefxai_common.resilience import CircuitBreaker, CircuitState

#: Status names a served RPC is pre-initialised with (what the bootstrap's error mapping can send).
RPC_STATUSES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "FAILED_PRECONDITION",
    "RESOURCE_EXHAUSTED",
    "INTERNAL",
    "UNAVAILABLE",
)
#: Error kinds every service is pre-initialised with.
RPC_ERROR_KINDS = (
    "invalid_argument",
    "not_found",
    "already_exists",
    "failed_precondition",
    "resource_exhausted",
    "unavailable",
    "deadline_exceeded",
    "internal",
)
_NOT_ERRORS = frozenset({"OK", "CANCELLED"})
_INTERNAL = frozenset({"UNKNOWN", "INTERNAL", "DATA_LOSS"})
LAG_INTERVAL_SECONDS = 0.5

OPERATIONS = Counter(
    "briefxai_operations_total",
    "Operations completed: RPCs served (status: gRPC code name), pipeline stages, store calls.",
    ["service", "operation", "status"],
)
OPERATION_SECONDS = Histogram(
    "briefxai_operation_duration_seconds",
    "Wall time of one operation (RPC, pipeline stage, store call).",
    ["service", "operation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0),
)
MEMORY_USAGE = Gauge(
    "briefxai_memory_usage_bytes", "Resident set size of the service's process, read at scrape.", ["service"]
)
ACTIVE_SESSIONS = Gauge(
    "briefxai_active_sessions",
    "Work in progress: analyses running or queued on the gateway, RPCs and streams in flight elsewhere.",
    ["service"],
)
ERRORS = Counter("briefxai_errors_total", "Errors by kind.", ["service", "kind"])
CIRCUIT_BREAKER_STATE = Gauge(
    "briefxai_circuit_breaker_state",
    "Circuit breaker state: 0 closed, 1 open, 2 half-open, read at scrape.",
    ["service", "breaker"],
)
CIRCUIT_BREAKER_TRANSITIONS = Counter(
    "briefxai_circuit_breaker_transitions_total",
    "Circuit breaker state changes.",
    ["service", "breaker", "from", "to"],
)
#: (from, to) of the transitions a breaker makes (open -> closed: a reset by hand).
BREAKER_TRANSITIONS = (
    ("closed", "open"),
    ("open", "half_open"),
    ("half_open", "closed"),
    ("half_open", "open"),
    ("open", "closed"),
)
RETRIES = Counter(
    "briefxai_retries_total", "Attempts retried after a transient failure.", ["service", "dependency"]
)
RETRIES_DENIED = Counter(
    "briefxai_retries_denied_total",
    "Retries not made: retry budget spent, deadline too near, or a longer wait asked than allowed.",
    ["service", "dependency", "reason"],
)
RETRY_DENIAL_REASONS = ("budget", "deadline", "retry_after")
FAILOVERS = Counter(
    "briefxai_failovers_total",
    "Work handed from a provider that failed it to the next in a failover chain, by outcome there.",
    ["service", "from", "to", "outcome"],
)
EVENT_LOOP_LAG = Histogram(
    "briefxai_event_loop_lag_seconds",
    f"How late the event loop wakes a {LAG_INTERVAL_SECONDS:g} s sleep (time other work held the loop).",
    ["service"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

_process = psutil.Process()
_session_sources: dict[str, Callable[[], float]] = {}


def _rss() -> float:
    return float(_process.memory_info().rss)


def error_kind(status: str) -> str | None:
    """The ``kind`` a failed operation with gRPC code name ``status`` counts as; None when not an error."""
    if status in _NOT_ERRORS:
        return None
    return "internal" if status in _INTERNAL else status.lower()


def declare(
    service: str,
    *,
    operations: Iterable[str] = (),
    statuses: Iterable[str] = ("OK",),
    error_kinds: Iterable[str] = (),
) -> None:
    """Creates the series of ``operations`` (each with every status) and ``error_kinds`` at 0."""
    statuses = tuple(statuses)
    for operation in operations:
        OPERATION_SECONDS.labels(service, operation)
        for status in statuses:
            OPERATIONS.labels(service, operation, status)
    for kind in error_kinds:
        ERRORS.labels(service, kind)


def record_operation(service: str, operation: str, status: str, seconds: float) -> None:
    OPERATIONS.labels(service, operation, status).inc()
    OPERATION_SECONDS.labels(service, operation).observe(seconds)


def count_error(service: str, kind: str, amount: int = 1) -> None:
    ERRORS.labels(service, kind).inc(amount)


@contextmanager
def timed_operation(
    service: str,
    operation: str,
    *,
    expected: dict[type[BaseException], str] | None = None,
    failure_kind: str = "internal",
) -> Iterator[None]:
    """Records the block as ``operation`` with status OK; an exception whose type ``expected`` maps to a
    status gets that status (not an error); cancellation is CANCELLED; any other exception is INTERNAL
    and counts ``errors_total{kind=failure_kind}``."""
    began = time.perf_counter()
    try:
        yield
    except BaseException as exc:
        status = next((s for t, s in (expected or {}).items() if isinstance(exc, t)), None)
        if status is None:
            if isinstance(exc, asyncio.CancelledError | GeneratorExit):
                status = "CANCELLED"
            else:
                status = "INTERNAL"
                count_error(service, failure_kind)
        record_operation(service, operation, status, time.perf_counter() - began)
        raise
    record_operation(service, operation, "OK", time.perf_counter() - began)


def set_active_sessions(service: str, source: Callable[[], float]) -> None:
    """Makes ``briefxai_active_sessions{service}`` read ``source()`` instead of the RPCs in flight."""
    _session_sources[service] = source


def watch_breaker(service: str, breaker: CircuitBreaker) -> None:
    """Exports ``breaker``'s state as ``briefxai_circuit_breaker_state{service, breaker=<its name>}``
    and counts its transitions (series at 0 from the start)."""
    CIRCUIT_BREAKER_STATE.labels(service, breaker.name).set_function(lambda: float(breaker.state.value))
    for old, new in BREAKER_TRANSITIONS:
        CIRCUIT_BREAKER_TRANSITIONS.labels(service, breaker.name, old, new)

    def count(_: CircuitBreaker, old: CircuitState, new: CircuitState) -> None:
        CIRCUIT_BREAKER_TRANSITIONS.labels(service, breaker.name, old.label, new.label).inc()

    breaker.add_listener(count)


def declare_retries(service: str, dependency: str) -> None:
    """The retry series of one dependency at 0."""
    RETRIES.labels(service, dependency)
    for reason in RETRY_DENIAL_REASONS:
        RETRIES_DENIED.labels(service, dependency, reason)


def count_retry(service: str, dependency: str) -> None:
    RETRIES.labels(service, dependency).inc()


def count_retry_denied(service: str, dependency: str, reason: str) -> None:
    RETRIES_DENIED.labels(service, dependency, reason).inc()


def declare_failovers(service: str, chain: Sequence[str]) -> None:
    """Failover series at 0 for each pair (earlier provider, later provider) of ``chain``."""
    for i, source in enumerate(chain):
        for target in chain[i + 1 :]:
            for outcome in ("ok", "failed"):
                FAILOVERS.labels(service, source, target, outcome)


def count_failover(service: str, source: str, target: str, outcome: str, amount: int = 1) -> None:
    """``amount`` units of work that ``source`` failed went to ``target``, which served them (``ok``) or not."""
    if amount:
        FAILOVERS.labels(service, source, target, outcome).inc(amount)


async def measure_event_loop_lag(service: str, interval: float = LAG_INTERVAL_SECONDS) -> None:
    """Observes the overshoot of an ``interval`` sleep into ``briefxai_event_loop_lag_seconds``, forever."""
    loop = asyncio.get_running_loop()
    histogram = EVENT_LOOP_LAG.labels(service)
    while True:
        began = loop.time()
        await asyncio.sleep(interval)
        histogram.observe(max(0.0, loop.time() - began - interval))


class ServiceObserver:
    """The per-service series of one server: memory, active sessions, RPC operations and errors.

    ``own`` are the full gRPC service names the service registered: only their RPCs count as active
    sessions and errors (health checks and reflection are counted as operations only).
    """

    def __init__(self, service: str) -> None:
        self.service = service
        self.own: frozenset[str] = frozenset()
        self._in_flight = 0
        self._lock = threading.Lock()  # sync handlers run in grpc's thread pool
        MEMORY_USAGE.labels(service).set_function(_rss)
        ACTIVE_SESSIONS.labels(service).set_function(self.active_sessions)
        EVENT_LOOP_LAG.labels(service)
        declare(service, error_kinds=RPC_ERROR_KINDS)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def active_sessions(self) -> float:
        source = _session_sources.get(self.service)
        return float(source()) if source is not None else float(self._in_flight)

    def serve(self, grpc_services: Iterable[str], methods: Iterable[str]) -> None:
        """Declares the service's own gRPC services and their methods (series at 0 for each status)."""
        self.own = frozenset(grpc_services)
        declare(self.service, operations=methods, statuses=RPC_STATUSES)

    def rpc_started(self, grpc_service: str) -> None:
        if grpc_service in self.own:
            with self._lock:
                self._in_flight += 1

    def rpc_finished(self, grpc_service: str, method: str, status: str, seconds: float) -> None:
        record_operation(self.service, method, status, seconds)
        if grpc_service not in self.own:
            return
        with self._lock:
            self._in_flight -= 1
        kind = error_kind(status)
        if kind is not None:
            count_error(self.service, kind)
