"""The async circuit breaker and the retrier in briefxai_common.resilience (the breaker's half-open
queueing against a real gRPC server, retry budgets, deadlines and Retry-After: tests/common/test_resilience.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from briefxai_common.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    Retrier,
    RetryPolicy,
)


class Transient(Exception):
    """Counted by the breakers in these tests (like UNAVAILABLE)."""


class Permanent(Exception):
    """Not counted (like INVALID_ARGUMENT): the dependency answered."""


def counted(exc: BaseException) -> bool:
    return isinstance(exc, Transient)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_breaker(
    clock: FakeClock, threshold: int = 3, reset: float = 10.0, half_open: int = 1, successes: int = 1
) -> CircuitBreaker:
    return CircuitBreaker(
        "dep",
        failure_threshold=threshold,
        success_threshold=successes,
        open_timeout=reset,
        half_open_max_calls=half_open,
        is_failure=counted,
        clock=clock,
    )


async def half_open_breaker(successes: int = 1) -> CircuitBreaker:
    """A breaker opened by one failure (open timeout 1 s, one trial at a time), its timeout just over."""
    clock = FakeClock()
    breaker = make_breaker(clock, threshold=1, reset=1.0, half_open=1, successes=successes)
    with pytest.raises(Transient):
        await breaker.call(fail_transient)
    clock.now += 1.0
    return breaker


def retrier(policy: RetryPolicy) -> Retrier:
    return Retrier("resilience-test", "dep", policy, is_retryable=counted)


async def succeed() -> str:
    return "ok"


async def fail_transient() -> str:
    raise Transient("down")


async def fail_permanent() -> str:
    raise Permanent("bad request")


async def test_opens_after_threshold_consecutive_counted_failures() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, threshold=3)
    for _ in range(2):
        with pytest.raises(Transient):
            await breaker.call(fail_transient)
    assert breaker.state is CircuitState.CLOSED
    with pytest.raises(Transient):
        await breaker.call(fail_transient)
    assert breaker.state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError) as info:
        await breaker.call(succeed)
    assert info.value.name == "dep"
    assert 0 < info.value.retry_after <= 10.0


async def test_success_resets_the_failure_count() -> None:
    breaker = make_breaker(FakeClock(), threshold=2)
    with pytest.raises(Transient):
        await breaker.call(fail_transient)
    assert await breaker.call(succeed) == "ok"
    with pytest.raises(Transient):
        await breaker.call(fail_transient)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.consecutive_failures == 1


async def test_uncounted_errors_never_open_it() -> None:
    breaker = make_breaker(FakeClock(), threshold=1)
    for _ in range(5):
        with pytest.raises(Permanent):
            await breaker.call(fail_permanent)
    assert breaker.state is CircuitState.CLOSED


async def test_half_open_trial_success_closes_failure_reopens() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, threshold=1, reset=5.0)
    with pytest.raises(Transient):
        await breaker.call(fail_transient)
    assert breaker.state is CircuitState.OPEN
    clock.now += 5.0
    assert breaker.state is CircuitState.HALF_OPEN
    with pytest.raises(Transient):
        await breaker.call(fail_transient)
    assert breaker.state is CircuitState.OPEN
    assert breaker.opened_count == 2
    clock.now += 5.0
    assert await breaker.call(succeed) == "ok"
    assert breaker.state is CircuitState.CLOSED
    assert breaker.snapshot()["state"] == "closed"


async def test_half_open_admits_the_trial_calls_and_the_others_wait_for_them() -> None:
    breaker = await half_open_breaker()
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "late"

    trial = asyncio.create_task(breaker.call(slow))
    await asyncio.sleep(0)
    with pytest.raises(CircuitOpenError):  # the non-waiting protocol still refuses a third call at once
        breaker.before_call()
    waiting = [asyncio.create_task(breaker.call(succeed)) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert not any(task.done() for task in waiting)  # queued behind the trial, not failed
    release.set()
    assert await trial == "late"
    assert [await task for task in waiting] == ["ok"] * 3
    assert breaker.state is CircuitState.CLOSED


async def test_callers_waiting_on_a_failed_trial_fail_with_the_open_breaker() -> None:
    breaker = await half_open_breaker()
    release = asyncio.Event()

    async def slow_failure() -> str:
        await release.wait()
        raise Transient("still down")

    trial = asyncio.create_task(breaker.call(slow_failure))
    await asyncio.sleep(0)
    waiting = asyncio.create_task(breaker.call(succeed))
    await asyncio.sleep(0.01)
    release.set()
    with pytest.raises(Transient):
        await trial
    with pytest.raises(CircuitOpenError, match="circuit breaker dep is open"):
        await waiting
    assert breaker.state is CircuitState.OPEN


async def test_a_wait_for_the_trials_is_bounded() -> None:
    breaker = await half_open_breaker()
    trial = asyncio.create_task(breaker.call(asyncio.sleep, 60))
    await asyncio.sleep(0)
    with pytest.raises(CircuitOpenError, match="half-open") as info:
        await breaker.admit(max_wait=0.05)
    assert info.value.half_open and info.value.waited == 0.05
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial


async def test_success_threshold_trials_close_it() -> None:
    breaker = await half_open_breaker(successes=3)
    results = await asyncio.gather(*(breaker.call(succeed) for _ in range(5)))
    assert results == ["ok"] * 5  # one trial at a time, each waiting for the one before
    assert breaker.state is CircuitState.CLOSED


async def test_cancelled_trial_frees_its_slot() -> None:
    breaker = await half_open_breaker()
    trial = asyncio.create_task(breaker.call(asyncio.sleep, 60))
    await asyncio.sleep(0)
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    assert breaker.state is CircuitState.HALF_OPEN
    assert await breaker.call(succeed) == "ok"
    assert breaker.state is CircuitState.CLOSED


def test_state_change_callback_sees_every_transition() -> None:
    clock = FakeClock()
    seen: list[tuple[CircuitState, CircuitState]] = []
    breaker = CircuitBreaker(
        "dep",
        failure_threshold=1,
        open_timeout=1.0,
        is_failure=counted,
        clock=clock,
        on_state_change=lambda _b, old, new: seen.append((old, new)),
    )
    breaker.before_call()
    breaker.record_failure(Transient())
    clock.now += 1.0
    breaker.before_call()
    breaker.record_success()
    assert seen == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]


def test_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("x", failure_threshold=0)
    with pytest.raises(ValueError):
        CircuitBreaker("x", open_timeout=-1)
    with pytest.raises(ValueError):
        CircuitBreaker("x", success_threshold=0)
    with pytest.raises(ValueError):
        CircuitBreaker("x", half_open_max_calls=0)


# -- a state machine test against a small reference model -----------------------------------------


@dataclass
class Model:
    threshold: int
    reset: float
    half_open_max: int
    success_threshold: int
    state: CircuitState = CircuitState.CLOSED
    failures: int = 0
    successes: int = 0
    opened_at: float = 0.0
    trials: int = 0
    generation: int = 0
    history: list[str] = field(default_factory=list)

    def current(self, now: float) -> CircuitState:
        if self.state is CircuitState.OPEN and now - self.opened_at >= self.reset:
            self.state = CircuitState.HALF_OPEN
            self.trials = self.successes = 0
            self.generation += 1
        return self.state

    def admit(self, now: float) -> int | None:
        """The call's ticket, None when refused."""
        state = self.current(now)
        if state is CircuitState.OPEN:
            return None
        if state is CircuitState.HALF_OPEN:
            if self.trials >= self.half_open_max:
                return None
            self.trials += 1
            return self.generation
        return 0

    def open(self, now: float) -> None:
        self.state = CircuitState.OPEN
        self.opened_at = now
        self.trials = self.successes = 0

    def free(self, ticket: int) -> None:
        if ticket and ticket == self.generation and self.trials > 0:
            self.trials -= 1

    def finish(self, outcome: str, ticket: int, now: float) -> None:
        state = self.current(now)
        if outcome == "abandoned":
            if state is CircuitState.HALF_OPEN:
                self.free(ticket)
            return
        if outcome in ("success", "permanent"):
            if state is CircuitState.HALF_OPEN:
                self.free(ticket)
                self.successes += 1
                if self.successes >= self.success_threshold:
                    self.state = CircuitState.CLOSED
                    self.failures = self.trials = self.successes = 0
            elif state is CircuitState.CLOSED:
                self.failures = 0
            return
        if state is CircuitState.HALF_OPEN:
            self.failures += 1
            self.open(now)
        elif state is CircuitState.CLOSED:
            self.failures += 1
            if self.failures >= self.threshold:
                self.open(now)


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.breaker: CircuitBreaker | None = None
        self.model: Model | None = None
        self.in_flight: list[int] = []  # tickets

    @precondition(lambda self: self.breaker is None)
    @rule(
        threshold=st.integers(min_value=1, max_value=4),
        reset=st.sampled_from([0.0, 1.0, 5.0]),
        half_open=st.integers(min_value=1, max_value=3),
        successes=st.integers(min_value=1, max_value=3),
    )
    def configure(self, threshold: int, reset: float, half_open: int, successes: int) -> None:
        self.breaker = make_breaker(self.clock, threshold, reset, half_open, successes)
        self.model = Model(threshold, reset, half_open, successes)

    @precondition(lambda self: self.breaker is not None)
    @rule()
    def start_call(self) -> None:
        assert self.breaker is not None and self.model is not None
        expected = self.model.admit(self.clock.now)
        try:
            ticket: int | None = self.breaker.before_call()
        except CircuitOpenError:
            ticket = None
        assert ticket == expected
        if ticket is not None:
            self.in_flight.append(ticket)

    @precondition(lambda self: self.breaker is not None and self.in_flight)
    @rule(
        outcome=st.sampled_from(["success", "transient", "permanent", "abandoned"]),
        which=st.integers(min_value=0, max_value=10),
    )
    def finish_call(self, outcome: str, which: int) -> None:
        assert self.breaker is not None and self.model is not None
        ticket = self.in_flight.pop(which % len(self.in_flight))
        self.model.finish(outcome, ticket, self.clock.now)
        if outcome == "success":
            self.breaker.record_success(ticket)
        elif outcome == "transient":
            self.breaker.record_failure(Transient(), ticket)
        elif outcome == "permanent":
            self.breaker.record_failure(Permanent(), ticket)
        else:
            self.breaker.record_abandoned(ticket)

    @precondition(lambda self: self.breaker is not None)
    @rule(seconds=st.sampled_from([0.5, 1.0, 5.0]))
    def advance(self, seconds: float) -> None:
        self.clock.now += seconds

    @invariant()
    def agrees_with_model(self) -> None:
        if self.breaker is None or self.model is None:
            return
        assert self.breaker.state is self.model.current(self.clock.now)
        if self.model.state is CircuitState.CLOSED:
            assert self.breaker.consecutive_failures == self.model.failures < self.model.threshold

    @invariant()
    def open_means_recently_opened(self) -> None:
        if self.breaker is not None and self.breaker.state is CircuitState.OPEN:
            assert self.model is not None
            assert self.clock.now - self.model.opened_at < self.model.reset


TestBreakerStateMachine = BreakerMachine.TestCase
TestBreakerStateMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


# -- retry ----------------------------------------------------------------------------------------


async def test_retrier_retries_retryable_then_succeeds() -> None:
    attempts = 0
    retries: list[int] = []

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise Transient("again")
        return "done"

    result = await Retrier(
        "resilience-test",
        "dep",
        RetryPolicy(max_attempts=5, initial_delay=0.001, max_delay=0.002),
        is_retryable=counted,
        on_retry=lambda attempt, exc, sleep: retries.append(attempt),
    ).call(flaky)
    assert result == "done"
    assert attempts == 3
    assert retries == [1, 2]


async def test_retrier_gives_up_with_the_last_error() -> None:
    attempts = 0

    async def down() -> str:
        nonlocal attempts
        attempts += 1
        raise Transient(f"attempt {attempts}")

    with pytest.raises(Transient, match="attempt 3"):
        await retrier(RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.001)).call(down)
    assert attempts == 3


async def test_retrier_does_not_retry_other_errors() -> None:
    attempts = 0

    async def bad() -> str:
        nonlocal attempts
        attempts += 1
        raise Permanent("no")

    with pytest.raises(Permanent):
        await retrier(RetryPolicy(max_attempts=5, initial_delay=0.001)).call(bad)
    assert attempts == 1


async def test_open_breaker_inside_retry_stops_the_retries() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, threshold=2, reset=60.0)
    attempts = 0

    async def down() -> str:
        nonlocal attempts
        attempts += 1
        raise Transient("down")

    async def attempt() -> str:
        return await breaker.call(down)

    with pytest.raises(CircuitOpenError):
        await retrier(RetryPolicy(max_attempts=10, initial_delay=0.001, max_delay=0.001)).call(attempt)
    assert attempts == 2
    assert breaker.state is CircuitState.OPEN


def test_retry_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(initial_delay=-1)
    with pytest.raises(ValueError):
        RetryPolicy(multiplier=0.5)
