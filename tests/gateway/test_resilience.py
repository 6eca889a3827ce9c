"""The async circuit breaker and the retry helper in briefxai_common.resilience."""

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
    RetryPolicy,
    retry_call,
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
    clock: FakeClock, threshold: int = 3, reset: float = 10.0, half_open: int = 1
) -> CircuitBreaker:
    return CircuitBreaker(
        "dep",
        failure_threshold=threshold,
        reset_timeout=reset,
        half_open_max_calls=half_open,
        is_failure=counted,
        clock=clock,
    )


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


async def test_half_open_admits_only_the_trial_calls() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, threshold=1, reset=1.0, half_open=1)
    with pytest.raises(Transient):
        await breaker.call(fail_transient)
    clock.now += 1.0
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "late"

    trial = asyncio.create_task(breaker.call(slow))
    await asyncio.sleep(0)
    with pytest.raises(CircuitOpenError):
        await breaker.call(succeed)
    release.set()
    assert await trial == "late"
    assert breaker.state is CircuitState.CLOSED


async def test_cancelled_trial_frees_its_slot() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, threshold=1, reset=1.0, half_open=1)
    with pytest.raises(Transient):
        await breaker.call(fail_transient)
    clock.now += 1.0
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
        reset_timeout=1.0,
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
        CircuitBreaker("x", reset_timeout=-1)
    with pytest.raises(ValueError):
        CircuitBreaker("x", half_open_max_calls=0)


# -- a state machine test against a small reference model -----------------------------------------


@dataclass
class Model:
    threshold: int
    reset: float
    half_open_max: int
    state: CircuitState = CircuitState.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    trials: int = 0
    history: list[str] = field(default_factory=list)

    def current(self, now: float) -> CircuitState:
        if self.state is CircuitState.OPEN and now - self.opened_at >= self.reset:
            self.state = CircuitState.HALF_OPEN
            self.trials = 0
        return self.state

    def admit(self, now: float) -> bool:
        state = self.current(now)
        if state is CircuitState.OPEN:
            return False
        if state is CircuitState.HALF_OPEN:
            if self.trials >= self.half_open_max:
                return False
            self.trials += 1
        return True

    def open(self, now: float) -> None:
        self.state = CircuitState.OPEN
        self.opened_at = now
        self.trials = 0

    def finish(self, outcome: str, now: float) -> None:
        if outcome == "abandoned":
            if self.state is CircuitState.HALF_OPEN and self.trials > 0:
                self.trials -= 1
            return
        if outcome in ("success", "permanent"):
            if self.state is CircuitState.HALF_OPEN:
                self.state = CircuitState.CLOSED
                self.failures = 0
                self.trials = 0
            elif self.state is CircuitState.CLOSED:
                self.failures = 0
            return
        if self.state is CircuitState.HALF_OPEN:
            self.failures += 1
            self.open(now)
        elif self.state is CircuitState.CLOSED:
            self.failures += 1
            if self.failures >= self.threshold:
                self.open(now)


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.breaker: CircuitBreaker | None = None
        self.model: Model | None = None
        self.in_flight = 0

    @precondition(lambda self: self.breaker is None)
    @rule(
        threshold=st.integers(min_value=1, max_value=4),
        reset=st.sampled_from([0.0, 1.0, 5.0]),
        half_open=st.integers(min_value=1, max_value=3),
    )
    def configure(self, threshold: int, reset: float, half_open: int) -> None:
        self.breaker = make_breaker(self.clock, threshold, reset, half_open)
        self.model = Model(threshold, reset, half_open)

    @precondition(lambda self: self.breaker is not None)
    @rule()
    def start_call(self) -> None:
        assert self.breaker is not None and self.model is not None
        expected = self.model.admit(self.clock.now)
        try:
            self.breaker.before_call()
            admitted = True
        except CircuitOpenError:
            admitted = False
        assert admitted == expected
        if admitted:
            self.in_flight += 1

    @precondition(lambda self: self.breaker is not None and self.in_flight > 0)
    @rule(outcome=st.sampled_from(["success", "transient", "permanent", "abandoned"]))
    def finish_call(self, outcome: str) -> None:
        assert self.breaker is not None and self.model is not None
        self.in_flight -= 1
        self.model.finish(outcome, self.clock.now)
        if outcome == "success":
            self.breaker.record_success()
        elif outcome == "transient":
            self.breaker.record_failure(Transient())
        elif outcome == "permanent":
            self.breaker.record_failure(Permanent())
        else:
            self.breaker.record_abandoned()

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


async def test_retry_call_retries_retryable_then_succeeds() -> None:
    attempts = 0
    retries: list[int] = []

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise Transient("again")
        return "done"

    result = await retry_call(
        flaky,
        policy=RetryPolicy(max_attempts=5, initial_backoff=0.001, max_backoff=0.002),
        is_retryable=counted,
        on_retry=lambda attempt, exc, sleep: retries.append(attempt),
    )
    assert result == "done"
    assert attempts == 3
    assert retries == [1, 2]


async def test_retry_call_gives_up_with_the_last_error() -> None:
    attempts = 0

    async def down() -> str:
        nonlocal attempts
        attempts += 1
        raise Transient(f"attempt {attempts}")

    with pytest.raises(Transient, match="attempt 3"):
        await retry_call(
            down,
            policy=RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.001),
            is_retryable=counted,
        )
    assert attempts == 3


async def test_retry_call_does_not_retry_other_errors() -> None:
    attempts = 0

    async def bad() -> str:
        nonlocal attempts
        attempts += 1
        raise Permanent("no")

    with pytest.raises(Permanent):
        await retry_call(bad, policy=RetryPolicy(max_attempts=5, initial_backoff=0.001), is_retryable=counted)
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
        await retry_call(
            attempt,
            policy=RetryPolicy(max_attempts=10, initial_backoff=0.001, max_backoff=0.001),
            is_retryable=counted,
        )
    assert attempts == 2
    assert breaker.state is CircuitState.OPEN


def test_retry_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(initial_backoff=-1)
