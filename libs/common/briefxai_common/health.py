"""What ``GET /health`` and ``/readyz`` say: a service's own report, judged by one set of rules.

The body has the reference's shape, fields that do not apply left out::

    {"status": "healthy" | "degraded" | "unhealthy", "uptime_seconds", "memory_usage_mb",
     "active_sessions", "database_status": "connected" | "disconnected",
     "providers": {name: "available" | "degraded" | "unavailable"},
     "circuit_breakers": {name: "closed" | "open" | "half_open"}}

plus ``service``, ``grpc_status`` (the gRPC health state, SERVING or NOT_SERVING), ``phase``
(starting, serving, draining, stopped), ``reasons`` (why it is not healthy) and the service's own
details. The rules (:func:`judge`):

- **unhealthy** (HTTP 503, ``/readyz`` 503): the server is not serving (starting, draining, stopped), or
  the service says it cannot do its work (:attr:`HealthReport.not_ready`: model not loaded, store
  unreachable, providers not started).
- **degraded** (HTTP 200): it serves, but a circuit breaker is not closed, a provider or downstream is
  not ``available``, or the service names another reason (:attr:`HealthReport.degraded`).
- **healthy** (HTTP 200) otherwise.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psutil

from briefxai_common.logging import get_logger

log = get_logger(__name__)
HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
AVAILABLE, UNAVAILABLE = "available", "unavailable"  # and DEGRADED, for providers
CONNECTED, DISCONNECTED = "connected", "disconnected"
STARTING, SERVING_PHASE, DRAINING, STOPPED = "starting", "serving", "draining", "stopped"


@dataclass
class HealthReport:
    """What a service says about itself (``Service.health_info`` returns one, or an awaitable of one)."""

    not_ready: list[str] = field(default_factory=list)
    """Why it cannot do its work now: makes it unhealthy and not ready."""
    degraded: list[str] = field(default_factory=list)
    """Why it works with less than its full capacity or reliability."""
    active_sessions: int | None = None
    """Work in progress; None: the bootstrap's count of the service's RPCs in flight."""
    database_status: str | None = None
    providers: dict[str, str] | None = None
    circuit_breakers: dict[str, str] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    """Service-specific fields added to the body as they are."""


HealthSource = Callable[[], HealthReport | Awaitable[HealthReport]]


@dataclass(frozen=True)
class Assessment:
    """A judged report: the /health body and status, and whether the service is ready (/readyz)."""

    status: str
    ready: bool
    reasons: list[str]
    body: dict[str, Any]


def judge(phase: str, report: HealthReport) -> tuple[str, bool, list[str]]:
    """``(status, ready, reasons)`` by the rules in the module docstring."""
    not_ready = ([] if phase == SERVING_PHASE else [phase]) + list(report.not_ready)
    if not_ready:
        return UNHEALTHY, False, not_ready
    reasons = list(report.degraded)
    for name, state in (report.circuit_breakers or {}).items():
        if state != "closed":
            reasons.append(f"circuit breaker {name} {state}")
    for name, state in (report.providers or {}).items():
        if state != AVAILABLE:
            reasons.append(f"{name} {state}")
    return (DEGRADED if reasons else HEALTHY), True, reasons


class HealthMonitor:
    """Builds the assessment of one service from its report, its phase and the process' figures."""

    def __init__(
        self,
        service: str,
        phase: Callable[[], str],
        source: HealthSource | None = None,
        active_sessions: Callable[[], float] | None = None,
        track_memory: bool = True,
        track_cpu: bool = True,
    ) -> None:
        self.service = service
        self._phase = phase
        self._source = source
        self._active_sessions = active_sessions
        self._track_memory = track_memory
        self._track_cpu = track_cpu
        self._started = time.monotonic()
        self._process = psutil.Process()

    async def report(self) -> HealthReport:
        """The service's report; a report that cannot be made says so (unhealthy) instead of failing."""
        if self._source is None:
            return HealthReport()
        try:
            result = self._source()
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            log.exception("health_report_failed", service=self.service)
            return HealthReport(not_ready=[f"health report failed: {type(exc).__name__}"])
        return result

    async def assess(self) -> Assessment:
        phase = self._phase()
        report = await self.report()
        status, ready, reasons = judge(phase, report)
        body: dict[str, Any] = {
            "status": status,
            "service": self.service,
            "grpc_status": "SERVING" if phase == SERVING_PHASE else "NOT_SERVING",
            "phase": phase,
            "uptime_seconds": round(time.monotonic() - self._started, 3),
        }
        if self._track_memory:
            body["memory_usage_mb"] = round(self._process.memory_info().rss / (1024 * 1024), 1)
        if self._track_cpu:
            times = self._process.cpu_times()
            body["cpu_seconds"] = round(times.user + times.system, 3)
        sessions = report.active_sessions
        if sessions is None and self._active_sessions is not None:
            sessions = int(self._active_sessions())
        optional: Mapping[str, Any] = {
            "active_sessions": sessions,
            "database_status": report.database_status,
            "providers": report.providers,
            "circuit_breakers": report.circuit_breakers,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        if reasons:
            body["reasons"] = reasons
        for key, value in report.details.items():
            body.setdefault(key, value)
        return Assessment(status, ready, reasons, body)


class OutcomeTracker:
    """A dependency's recent outcomes as ``available`` (last call worked), ``degraded`` (the last
    calls failed, fewer than ``unavailable_after`` in a row) or ``unavailable`` (that many in a row)."""

    def __init__(self, unavailable_after: int = 3) -> None:
        self.unavailable_after = unavailable_after
        self.consecutive_failures = 0
        self.last_error = ""

    def success(self) -> None:
        self.consecutive_failures = 0

    def failure(self, error: str) -> None:
        self.consecutive_failures += 1
        self.last_error = error[:300]

    @property
    def status(self) -> str:
        if self.consecutive_failures == 0:
            return AVAILABLE
        return UNAVAILABLE if self.consecutive_failures >= self.unavailable_after else DEGRADED
