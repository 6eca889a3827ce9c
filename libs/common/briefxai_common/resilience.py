"""Resilience for calls to other processes: what is retried, how, for how long, and circuit breakers.

**What is retried** (decided here and nowhere else):

- gRPC (:func:`grpc_retryable`): UNAVAILABLE, RESOURCE_EXHAUSTED and ABORTED; DEADLINE_EXCEEDED only for
  idempotent calls (a call that ran out of time may have done its work); never INVALID_ARGUMENT,
  NOT_FOUND, FAILED_PRECONDITION, INTERNAL or any other code. The delay of a ``google.rpc.RetryInfo`` in
  the error is honoured. A breaker counts UNAVAILABLE, RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED as
  failures of the dependency (:func:`grpc_breaker_failure`); any other answer proves it is up.
- HTTP (:func:`http_retryable`): 408, 429 and 5xx, plus timeouts and broken connections (each HTTP
  client adds those); never another 4xx. ``Retry-After`` is honoured.
- The store (:func:`transient_store_error`): SQLite's "database is locked", lost or refused connections,
  PostgreSQL's serialization failures and deadlocks; never a constraint or a syntax error.

**How** (:class:`Retrier`, on tenacity): ``max_attempts`` attempts in all, exponential backoff
``initial_delay * multiplier ** (n - 1)`` capped at ``max_delay``, drawn uniformly from 0 to that
(full jitter) when ``jitter``. A delay the server asks for (Retry-After, RetryInfo) is waited out in
full; one longer than ``max_delay`` ends the retries instead. Nothing retries past its deadline: the
call's own timeout and the deadline of the call being served (:func:`deadline_scope`, the earlier wins);
no sleep ends past it and each attempt gets only the time left (:func:`time_left`). A retry budget per
dependency (:class:`RetryBudget`) keeps a failing dependency from multiplying the load: retries may be
at most ``budget_ratio`` of the calls of the last 10 s, plus ``budget_min_per_second``.

**Breakers** (:class:`CircuitBreaker`): closed while the dependency answers; ``failure_threshold``
consecutive counted failures open it, and it refuses calls at once (:class:`CircuitOpenError`, naming
it) for ``open_timeout`` seconds; then it is half-open: up to ``half_open_max_calls`` trial calls go
through, and the other callers wait (at most ``open_timeout``, never past their deadline) for the
trials' outcome instead of failing; ``success_threshold`` successes close it, a counted failure opens it
again. With a ``probe`` (a cheap call: GET /models, a gRPC health check), an open or half-open breaker is
probed every ``probe_interval`` seconds, and a probe that succeeds counts as a successful trial, so a
breaker closes soon after its dependency is back even with no traffic. Every transition is logged
(``circuit_breaker_state_changed``) and goes to the listeners (metrics: ``service_metrics.watch_breaker``).

Put the breaker inside the retry: every attempt is seen by the breaker and an open breaker ends the
retries.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    wait_exponential,
    wait_random_exponential,
)
from tenacity.wait import wait_base

from briefxai_common import service_metrics
from briefxai_common.logging import get_logger

P = ParamSpec("P")
T = TypeVar("T")
log = get_logger(__name__)

# ---- classification ------------------------------------------------------------------------------

RETRYABLE_GRPC_CODES = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED", "ABORTED"})
BREAKER_GRPC_CODES = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"})
RETRYABLE_HTTP_STATUSES = frozenset({408, 429})
# PostgreSQL SQLSTATEs worth a retry (class 08, connection exceptions, is matched by prefix).
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03"})
TRANSIENT_DB_MESSAGES = (
    "database is locked",
    "database table is locked",
    "server closed the connection",
    "connection refused",
    "could not connect",
    "connection failed",
    "terminating connection",
)


def grpc_retryable(code: str, *, idempotent: bool) -> bool:
    """Whether a gRPC call that failed with status ``code`` (its name) may be tried again."""
    return code in RETRYABLE_GRPC_CODES or (idempotent and code == "DEADLINE_EXCEEDED")


def grpc_breaker_failure(code: str) -> bool:
    """Whether status ``code`` says the dependency is failing (a breaker counts it)."""
    return code in BREAKER_GRPC_CODES


def http_retryable(status: int) -> bool:
    """Whether an HTTP answer with ``status`` may be asked again: 408, 429 and 5xx."""
    return status in RETRYABLE_HTTP_STATUSES or status >= 500


def transient_store_error(exc: BaseException) -> bool:
    """Whether a SQLAlchemy error is transient: a lost or refused connection, SQLite's lock timeout,
    PostgreSQL's serialization failure, deadlock or lock timeout. Judged by class name and SQLSTATE, so
    libs/common needs no SQLAlchemy."""
    if getattr(exc, "connection_invalidated", False):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__ if cls.__module__.startswith("sqlalchemy")}
    if "DisconnectionError" in names:
        return True
    if "OperationalError" not in names:
        return False
    original = getattr(exc, "orig", None)
    state = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    if isinstance(state, str) and state:
        return state.startswith("08") or state in TRANSIENT_SQLSTATES
    message = str(original if original is not None else exc).lower()
    return any(text in message for text in TRANSIENT_DB_MESSAGES)


# ---- deadlines -----------------------------------------------------------------------------------

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("briefxai_deadline", default=None)


@contextmanager
def deadline_scope(seconds: float | None) -> Iterator[None]:
    """Work inside must end within ``seconds`` (None: no new limit); an enclosing scope's earlier
    deadline still holds. Servers open one with the time left of the call they serve."""
    current = _deadline.get()
    deadline = current
    if seconds is not None:
        mine = time.monotonic() + max(0.0, seconds)
        deadline = mine if current is None else min(current, mine)
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left() -> float | None:
    """Seconds left before the current deadline (never negative); None when there is none."""
    deadline = _deadline.get()
    return None if deadline is None else max(0.0, deadline - time.monotonic())


# ---- retries -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How one operation retries; delays in seconds. ``max_attempts`` counts the first call."""

    max_attempts: int = 4
    initial_delay: float = 0.2
    max_delay: float = 5.0
    multiplier: float = 2.0
    jitter: bool = True
    budget_ratio: float = 0.2
    budget_min_per_second: float = 1.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must be >= 0")
        if self.multiplier < 1:
            raise ValueError("multiplier must be >= 1")
        if self.budget_ratio < 0 or self.budget_min_per_second < 0:
            raise ValueError("the retry budget must be >= 0")

    def backoff(self) -> wait_base:
        """The tenacity wait between attempts (before any delay the server asks for)."""
        if self.jitter:
            return wait_random_exponential(
                multiplier=self.initial_delay, max=self.max_delay, exp_base=self.multiplier
            )
        return wait_exponential(multiplier=self.initial_delay, max=self.max_delay, exp_base=self.multiplier)


class RetryBudget:
    """Retries to one dependency in the last ``window`` seconds may not exceed ``ratio`` times the calls
    in that window plus ``min_per_second`` times ``window`` (Finagle's retry budget): while a dependency
    fails everything, it sees about ``1 + ratio`` times the calls, not ``max_attempts`` times.
    Thread-safe (store calls retry in worker threads)."""

    def __init__(
        self,
        ratio: float,
        min_per_second: float,
        window: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.window = window
        self._clock = clock
        self._buckets: deque[list[int]] = deque()  # [second, calls, retries], oldest first
        self._lock = threading.Lock()

    def _current(self) -> list[int]:
        second = int(self._clock())
        while self._buckets and self._buckets[0][0] <= second - self.window:
            self._buckets.popleft()
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0])
        return self._buckets[-1]

    def record_call(self) -> None:
        with self._lock:
            self._current()[1] += 1

    def try_retry(self) -> bool:
        """Takes one retry from the budget; False (and nothing taken) when it is spent."""
        with self._lock:
            bucket = self._current()
            calls = sum(b[1] for b in self._buckets)
            retries = sum(b[2] for b in self._buckets)
            if retries + 1 > self.ratio * calls + self.min_per_second * self.window:
                return False
            bucket[2] += 1
            return True


class Retrier:
    """One dependency's retries: the policy, its retry budget, and ``briefxai_retries_total`` /
    ``briefxai_retries_denied_total{reason=budget|deadline|retry_after}`` under ``service`` and
    ``dependency``. ``retry_after(exc)`` is the delay the server asked for, or None."""

    def __init__(
        self,
        service: str,
        dependency: str,
        policy: RetryPolicy,
        *,
        is_retryable: Callable[[BaseException], bool],
        retry_after: Callable[[BaseException], float | None] | None = None,
        on_retry: Callable[[int, BaseException, float], None] | None = None,
    ) -> None:
        self.service = service
        self.dependency = dependency
        self.policy = policy
        self.is_retryable = is_retryable
        self.retry_after = retry_after
        self.on_retry = on_retry
        self.budget = RetryBudget(policy.budget_ratio, policy.budget_min_per_second)
        self._backoff = policy.backoff()
        service_metrics.declare_retries(service, dependency)

    def set_policy(self, policy: RetryPolicy) -> None:
        """Replaces the policy (hot reload): later calls use it, with a fresh retry budget; calls already
        retrying keep the backoff they started with."""
        self.policy = policy
        self.budget = RetryBudget(policy.budget_ratio, policy.budget_min_per_second)
        self._backoff = policy.backoff()

    def _server_delay(self, state: RetryCallState) -> float | None:
        exc = state.outcome.exception() if state.outcome is not None else None
        return None if exc is None or self.retry_after is None else self.retry_after(exc)

    def _wait(self, state: RetryCallState) -> float:
        delay = float(self._backoff(state))
        asked = self._server_delay(state)
        return delay if asked is None else max(delay, asked)

    def _stop(self, state: RetryCallState) -> bool:
        """Called after ``_wait`` (``state.upcoming_sleep`` is known); the budget is spent last, only for
        a retry that will happen."""
        if state.attempt_number >= self.policy.max_attempts:
            return True
        asked = self._server_delay(state)
        left = time_left()
        if asked is not None and asked > self.policy.max_delay:
            reason = "retry_after"
        elif left is not None and state.upcoming_sleep >= left:
            reason = "deadline"
        elif not self.budget.try_retry():
            reason = "budget"
        else:
            return False
        service_metrics.count_retry_denied(self.service, self.dependency, reason)
        log.info(
            "retry_denied",
            dependency=self.dependency,
            attempt=state.attempt_number,
            reason=reason,
            server_delay_seconds=asked,
            seconds_left=None if left is None else round(left, 3),
        )
        return True

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        if exc is None:
            return
        sleep = float(state.upcoming_sleep)
        service_metrics.count_retry(self.service, self.dependency)
        log.info(
            "retry",
            dependency=self.dependency,
            attempt=state.attempt_number,
            error=f"{type(exc).__name__}: {str(exc)[:200]}",
            sleep_seconds=round(sleep, 3),
        )
        if self.on_retry is not None:
            self.on_retry(state.attempt_number, exc, sleep)

    def _options(self, is_retryable: Callable[[BaseException], bool] | None) -> dict[str, object]:
        return {
            "stop": self._stop,
            "wait": self._wait,
            "retry": retry_if_exception(is_retryable or self.is_retryable),
            "before_sleep": self._before_sleep,
            "reraise": True,
        }

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        deadline: float | None = None,
        is_retryable: Callable[[BaseException], bool] | None = None,
    ) -> T:
        """Awaits ``fn()`` with retries, all within ``deadline`` seconds (and the enclosing deadline);
        ``fn`` reads :func:`time_left` for its own attempt. The last error is raised unchanged."""
        with deadline_scope(deadline):
            self.budget.record_call()
            async for attempt in AsyncRetrying(**self._options(is_retryable)):  # type: ignore[arg-type]
                with attempt:
                    return await fn()
        raise AssertionError("unreachable: tenacity returns, re-raises or stops with reraise=True")

    def call_sync(
        self,
        fn: Callable[[], T],
        *,
        deadline: float | None = None,
        is_retryable: Callable[[BaseException], bool] | None = None,
    ) -> T:
        """:meth:`call` for blocking code (store calls in worker threads); sleeps block the thread."""
        with deadline_scope(deadline):
            self.budget.record_call()
            for attempt in Retrying(**self._options(is_retryable)):  # type: ignore[arg-type]
                with attempt:
                    return fn()
        raise AssertionError("unreachable: tenacity returns, re-raises or stops with reraise=True")


# ---- circuit breakers ----------------------------------------------------------------------------


class CircuitState(enum.Enum):
    """Breaker states; ``value`` is the number exported as the ``..._circuit_breaker_state`` gauge."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2

    @property
    def label(self) -> str:
        return self.name.lower()


class CircuitOpenError(Exception):
    """Raised instead of calling the dependency: its breaker is open, or half-open and its trial calls
    did not finish while this call waited (``waited`` seconds)."""

    def __init__(
        self, name: str, retry_after: float, *, half_open: bool = False, waited: float = 0.0
    ) -> None:
        self.name = name
        self.retry_after = max(0.0, retry_after)
        self.half_open = half_open
        self.waited = waited
        if half_open:
            message = (
                f"circuit breaker {name} is half-open: its trial calls did not settle it within {waited:.1f}s"
            )
        else:
            message = f"circuit breaker {name} is open; next trial in {self.retry_after:.1f}s"
        super().__init__(message)


def _count_everything(_: BaseException) -> bool:
    return True


StateListener = Callable[["CircuitBreaker", CircuitState, CircuitState], None]


class CircuitBreaker:
    """An asyncio circuit breaker (see the module docstring). One instance per dependency; safe for
    concurrent calls on one event loop."""

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        success_threshold: int = 1,
        open_timeout: float = 30.0,
        half_open_max_calls: int = 1,
        is_failure: Callable[[BaseException], bool] = _count_everything,
        clock: Callable[[], float] = time.monotonic,
        on_state_change: StateListener | None = None,
        probe: Callable[[], Awaitable[bool]] | None = None,
        probe_interval: float = 5.0,
    ) -> None:
        if failure_threshold < 1 or success_threshold < 1 or half_open_max_calls < 1:
            raise ValueError("failure_threshold, success_threshold and half_open_max_calls must be >= 1")
        if open_timeout < 0:
            raise ValueError("open_timeout must be >= 0")
        if probe_interval <= 0:
            raise ValueError("probe_interval must be > 0")
        self.name = name
        self.failure_threshold = failure_threshold
        self.success_threshold = success_threshold
        self.open_timeout = open_timeout
        self.half_open_max_calls = half_open_max_calls
        self.is_failure = is_failure
        self.probe = probe
        self.probe_interval = probe_interval
        self._clock = clock
        self._listeners: list[StateListener] = [on_state_change] if on_state_change else []
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._successes = 0  # while half-open
        self._opened_at = 0.0
        self._trials = 0
        self._generation = 0  # of the current half-open period: a trial's ticket
        self._changed: asyncio.Event | None = None
        self._probe_task: asyncio.Task[None] | None = None
        self.opened_count = 0

    # -- state ---------------------------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The current state; an open breaker whose open timeout has passed reads as half-open."""
        if self._state is CircuitState.OPEN and self._clock() - self._opened_at >= self.open_timeout:
            self._transition(CircuitState.HALF_OPEN)
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def add_listener(self, listener: StateListener) -> None:
        """``listener(breaker, old, new)`` is called on every transition."""
        self._listeners.append(listener)

    def snapshot(self) -> dict[str, object]:
        """JSON-friendly view for health endpoints."""
        state = self.state
        view: dict[str, object] = {
            "state": state.label,
            "consecutive_failures": self._failures,
            "failure_threshold": self.failure_threshold,
            "success_threshold": self.success_threshold,
            "opened_count": self.opened_count,
        }
        if state is CircuitState.OPEN:
            view["next_trial_seconds"] = round(self.open_timeout - (self._clock() - self._opened_at), 3)
        elif state is CircuitState.HALF_OPEN:
            view["trials_in_flight"] = self._trials
            view["trial_successes"] = self._successes
        return view

    def _transition(self, new: CircuitState) -> None:
        old = self._state
        if old is new:
            return
        self._state = new
        self._trials = 0
        self._successes = 0
        if new is CircuitState.OPEN:
            self._opened_at = self._clock()
            self.opened_count += 1
            self._start_probing()
        elif new is CircuitState.HALF_OPEN:
            self._generation += 1
        else:
            self._failures = 0
        log.warning("circuit_breaker_state_changed", breaker=self.name, old=old.label, new=new.label)
        for listener in self._listeners:
            listener(self, old, new)
        self._notify()

    def _notify(self) -> None:
        """Wakes the callers waiting for a half-open breaker to settle."""
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    # -- the protocol, usable without ``call`` (and by state-machine tests) --------------------

    def before_call(self) -> int:
        """Admits a call or raises ``CircuitOpenError``, without waiting. Returns the call's ticket (its
        half-open period for a trial call, 0 otherwise); every admitted call must end in exactly one of
        ``record_success``, ``record_failure`` or ``record_abandoned`` with it."""
        state = self.state
        if state is CircuitState.OPEN:
            raise CircuitOpenError(self.name, self.open_timeout - (self._clock() - self._opened_at))
        if state is CircuitState.HALF_OPEN:
            if self._trials >= self.half_open_max_calls:
                raise CircuitOpenError(self.name, 0.0, half_open=True)
            self._trials += 1
            return self._generation
        return 0

    async def admit(self, max_wait: float | None = None) -> int:
        """``before_call``, except that a call finding every half-open trial slot taken waits for the
        trials' outcome: at most ``max_wait`` seconds (default ``open_timeout``), never past the current
        deadline. Raises ``CircuitOpenError`` when the breaker is (or opens again) open, or the wait ends."""
        wait = self.open_timeout if max_wait is None else max_wait
        left = time_left()
        if left is not None:
            wait = min(wait, left)
        loop = asyncio.get_running_loop()
        until = loop.time() + wait
        while True:
            try:
                return self.before_call()
            except CircuitOpenError as exc:
                remaining = until - loop.time()
                if not exc.half_open:
                    raise
                if remaining <= 0:
                    raise CircuitOpenError(self.name, 0.0, half_open=True, waited=wait) from None
            if self._changed is None:
                self._changed = asyncio.Event()
            changed = self._changed
            try:
                async with asyncio.timeout(remaining):
                    await changed.wait()
            except TimeoutError:
                continue  # the next before_call decides, with no time left

    def _free_trial(self, ticket: int) -> None:
        if ticket and ticket == self._generation and self._trials > 0:
            self._trials -= 1

    def record_success(self, ticket: int = 0) -> None:
        state = self.state
        if state is CircuitState.HALF_OPEN:
            self._free_trial(ticket)
            self._successes += 1
            if self._successes >= self.success_threshold:
                self._transition(CircuitState.CLOSED)
            else:
                self._notify()
        elif state is CircuitState.CLOSED:
            self._failures = 0
        # An outcome arriving while open (a call admitted before it opened) changes nothing.

    def record_failure(self, exc: BaseException, ticket: int = 0) -> None:
        """Counts ``exc`` if ``is_failure`` says so; anything else counts as a success."""
        if not self.is_failure(exc):
            self.record_success(ticket)
            return
        state = self.state
        if state is CircuitState.HALF_OPEN:
            self._failures += 1
            self._transition(CircuitState.OPEN)
        elif state is CircuitState.CLOSED:
            self._failures += 1
            if self._failures >= self.failure_threshold:
                self._transition(CircuitState.OPEN)

    def record_abandoned(self, ticket: int = 0) -> None:
        """The call was cancelled before an outcome: frees its half-open trial slot, counts nothing."""
        if self.state is CircuitState.HALF_OPEN:
            self._free_trial(ticket)
            self._notify()

    def reset(self) -> None:
        """Forces the breaker closed (operators, tests)."""
        self._transition(CircuitState.CLOSED)
        self._failures = 0

    # -- active health ----------------------------------------------------------------------------

    def probe_succeeded(self) -> None:
        """The dependency answered a probe: an open breaker turns half-open at once, and the probe
        counts as one successful trial."""
        if self.state is CircuitState.OPEN:
            self._transition(CircuitState.HALF_OPEN)
        if self._state is CircuitState.HALF_OPEN:
            self.record_success()

    def _start_probing(self) -> None:
        if self.probe is None or (self._probe_task is not None and not self._probe_task.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # opened outside a loop (tests of the state machine): no probes
            return
        # A fresh context: not the deadline nor the log fields of the call that happened to open it.
        self._probe_task = loop.create_task(
            self._probing(), name=f"breaker-probe-{self.name}", context=contextvars.Context()
        )

    async def _probing(self) -> None:
        """Probes every ``probe_interval`` seconds until the breaker is closed."""
        assert self.probe is not None  # noqa: S101  invariant for mypy, not a check on input
        while self.state is not CircuitState.CLOSED:
            await asyncio.sleep(self.probe_interval)
            if self.state is CircuitState.CLOSED:
                return
            try:
                async with asyncio.timeout(self.probe_interval):
                    alive = await self.probe()
            except Exception as exc:  # a probe that fails says the dependency is still down
                log.debug("circuit_breaker_probe_failed", breaker=self.name, error=repr(exc))
                alive = False
            if alive:
                log.info("circuit_breaker_probe_succeeded", breaker=self.name, state=self.state.label)
                self.probe_succeeded()

    async def close(self) -> None:
        """Stops the probe task, if one runs."""
        task, self._probe_task = self._probe_task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])

    # -- the usual entry points -------------------------------------------------------------------

    @asynccontextmanager
    async def guarded(self, max_wait: float | None = None) -> AsyncIterator[None]:
        """``async with breaker.guarded(): <the call>``: admitted as by :meth:`admit`, and the block's
        outcome recorded (an exception by ``is_failure``, cancellation as abandoned)."""
        ticket = await self.admit(max_wait)
        try:
            yield
        except Exception as exc:
            self.record_failure(exc, ticket)
            raise
        except BaseException:
            self.record_abandoned(ticket)
            raise
        self.record_success(ticket)

    async def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Awaits ``fn(*args, **kwargs)`` through the breaker."""
        async with self.guarded():
            return await fn(*args, **kwargs)
        raise AssertionError("unreachable: the block returns or raises")
