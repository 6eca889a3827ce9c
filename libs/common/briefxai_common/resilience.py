"""Resilience for calls to other services: an async circuit breaker and a tenacity retry helper.

``CircuitBreaker`` protects ``async def`` calls (pybreaker does not). It is closed while the
dependency answers; after ``failure_threshold`` consecutive *counted* failures it opens and
rejects calls at once with ``CircuitOpenError``; after ``reset_timeout`` seconds it lets up to
``half_open_max_calls`` trial calls through (half-open): a success closes it, a counted failure
opens it again. Only failures for which ``is_failure(exc)`` is true are counted (for gRPC:
UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED); any other outcome proves that the dependency
answers and counts as a success.

``retry_call`` runs a coroutine function with tenacity: exponential backoff with full jitter,
retrying only the exceptions ``is_retryable`` accepts. Put the breaker inside the retry so that
every attempt is seen by the breaker and an open breaker stops the retries.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    stop_any,
    wait_random_exponential,
)
from tenacity.stop import stop_base

P = ParamSpec("P")
T = TypeVar("T")


class CircuitState(enum.Enum):
    """Breaker states; ``value`` is the number exported as the ``..._circuit_breaker_state`` gauge."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2

    @property
    def label(self) -> str:
        return self.name.lower()


class CircuitOpenError(Exception):
    """Raised instead of calling the dependency while its breaker is open."""

    def __init__(self, name: str, retry_after: float) -> None:
        self.name = name
        self.retry_after = max(0.0, retry_after)
        super().__init__(f"circuit breaker for {name} is open; next trial in {self.retry_after:.1f}s")


def _count_everything(_: BaseException) -> bool:
    return True


class CircuitBreaker:
    """An asyncio circuit breaker. One instance per dependency; safe for concurrent calls on one loop."""

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        half_open_max_calls: int = 1,
        is_failure: Callable[[BaseException], bool] = _count_everything,
        clock: Callable[[], float] = time.monotonic,
        on_state_change: Callable[[CircuitBreaker, CircuitState, CircuitState], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if reset_timeout < 0:
            raise ValueError("reset_timeout must be >= 0")
        if half_open_max_calls < 1:
            raise ValueError("half_open_max_calls must be >= 1")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.half_open_max_calls = half_open_max_calls
        self.is_failure = is_failure
        self._clock = clock
        self._on_state_change = on_state_change
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trials = 0
        self.opened_count = 0

    # -- state ---------------------------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The current state; an open breaker whose reset timeout has passed reads as half-open."""
        if self._state is CircuitState.OPEN and self._clock() - self._opened_at >= self.reset_timeout:
            self._transition(CircuitState.HALF_OPEN)
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def snapshot(self) -> dict[str, object]:
        """JSON-friendly view for health endpoints."""
        state = self.state
        return {
            "state": state.label,
            "consecutive_failures": self._failures,
            "failure_threshold": self.failure_threshold,
            "opened_count": self.opened_count,
        }

    def _transition(self, new: CircuitState) -> None:
        old = self._state
        if old is new:
            return
        self._state = new
        if new is CircuitState.OPEN:
            self._opened_at = self._clock()
            self.opened_count += 1
        if new is not CircuitState.HALF_OPEN:
            self._trials = 0
        if new is CircuitState.CLOSED:
            self._failures = 0
        if self._on_state_change is not None:
            self._on_state_change(self, old, new)

    # -- the protocol, usable without ``call`` (and by state-machine tests) --------------------

    def before_call(self) -> None:
        """Admits a call or raises ``CircuitOpenError``. Every admitted call must end in exactly one
        of ``record_success``, ``record_failure`` or ``record_abandoned``."""
        state = self.state
        if state is CircuitState.OPEN:
            raise CircuitOpenError(self.name, self.reset_timeout - (self._clock() - self._opened_at))
        if state is CircuitState.HALF_OPEN:
            if self._trials >= self.half_open_max_calls:
                raise CircuitOpenError(self.name, 0.0)
            self._trials += 1

    def record_success(self) -> None:
        if self._state is CircuitState.HALF_OPEN:
            self._transition(CircuitState.CLOSED)
        elif self._state is CircuitState.CLOSED:
            self._failures = 0

    def record_failure(self, exc: BaseException) -> None:
        """Counts ``exc`` if ``is_failure`` says so; anything else counts as a success."""
        if not self.is_failure(exc):
            self.record_success()
            return
        if self._state is CircuitState.HALF_OPEN:
            self._failures += 1
            self._transition(CircuitState.OPEN)
        elif self._state is CircuitState.CLOSED:
            self._failures += 1
            if self._failures >= self.failure_threshold:
                self._transition(CircuitState.OPEN)
        # An outcome arriving while already open (a call admitted before opening) changes nothing.

    def record_abandoned(self) -> None:
        """The call was cancelled before an outcome: frees its half-open trial slot, counts nothing."""
        if self._state is CircuitState.HALF_OPEN and self._trials > 0:
            self._trials -= 1

    def reset(self) -> None:
        """Forces the breaker closed (operators, tests)."""
        self._transition(CircuitState.CLOSED)
        self._failures = 0

    # -- the usual entry point -------------------------------------------------------------------

    async def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Awaits ``fn(*args, **kwargs)`` through the breaker."""
        self.before_call()
        try:
            result = await fn(*args, **kwargs)
        except asyncio.CancelledError:
            self.record_abandoned()
            raise
        except Exception as exc:
            self.record_failure(exc)
            raise
        self.record_success()
        return result


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry. ``max_attempts`` counts the first call."""

    max_attempts: int = 4
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    # Give up starting new attempts after this many seconds in total; 0 = no limit.
    max_elapsed: float = 0.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.max_elapsed < 0:
            raise ValueError("backoff and elapsed limits must be >= 0")


async def retry_call(
    fn: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    is_retryable: Callable[[BaseException], bool],
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Awaits ``fn()``, retrying exceptions that ``is_retryable`` accepts, with full-jitter backoff.

    The last exception is re-raised unchanged when attempts run out. ``on_retry(attempt, exc,
    sleep_seconds)`` is called before each sleep (for logs and metrics).
    """

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is None or state.outcome is None:
            return
        exc = state.outcome.exception()
        if exc is not None:
            sleep = state.next_action.sleep if state.next_action is not None else 0.0
            on_retry(state.attempt_number, exc, float(sleep))

    stop: stop_base = stop_after_attempt(policy.max_attempts)
    if policy.max_elapsed > 0:
        stop = stop_any(stop, stop_after_delay(policy.max_elapsed))
    retrying = AsyncRetrying(
        stop=stop,
        wait=wait_random_exponential(multiplier=policy.initial_backoff, max=policy.max_backoff),
        retry=retry_if_exception(is_retryable),
        before_sleep=before_sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await fn()
    raise AssertionError("unreachable: tenacity either returns, re-raises or stops with reraise=True")
