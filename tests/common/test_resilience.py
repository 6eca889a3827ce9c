"""briefxai_common.resilience against real servers: a scripted gRPC server that fails then recovers (the
half-open breaker admits its trial and queues the other callers), and the scripted OpenAI-compatible
HTTP server (Retry-After, no retry on 400, the retry budget, deadlines, an open breaker, the probe).
The breaker's state machine and the plain retrier: tests/gateway/test_resilience.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY

from briefxai_common import service_metrics
from briefxai_common.config import BreakerSettings, LLMRetryPolicySettings, RetryPolicySettings
from briefxai_common.llm import ChatClient, GuardedEndpoint, LLMStatusError
from briefxai_common.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    Retrier,
    RetryBudget,
    RetryPolicy,
    deadline_scope,
    grpc_breaker_failure,
    grpc_retryable,
    http_retryable,
    time_left,
    transient_store_error,
)
from tests.support.fake_openai import Behaviour, FakeOpenAI

SERVICE = "resilience-test"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ---- a gRPC server that is down, then up ----------------------------------------------------------


@dataclass
class Flaky:
    """Answers ``/test.Flaky/Call`` with UNAVAILABLE while ``down``, else after ``delay`` seconds."""

    down: bool = True
    delay: float = 0.0
    calls: int = 0
    spans: list[tuple[float, float]] = field(default_factory=list)  # (start, end) of answered calls

    async def handle(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        self.calls += 1
        if self.down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "down for maintenance")
        start = time.monotonic()
        await asyncio.sleep(self.delay)
        self.spans.append((start, time.monotonic()))
        return b"ok:" + request


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[Flaky, grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]]]:
    state = Flaky()
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(state.handle)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Flaky", {"Call": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield state, channel.unary_unary("/test.Flaky/Call")
    finally:
        await channel.close()
        await server.stop(0)


def dependency_failure(exc: BaseException) -> bool:
    return isinstance(exc, grpc.aio.AioRpcError) and grpc_breaker_failure(exc.code().name)


async def test_half_open_admits_its_trial_and_the_other_callers_wait_instead_of_failing(
    flaky: tuple[Flaky, grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]],
) -> None:
    """The reported bug: a worker came back, four batches called at once, one trial went through and
    the other three failed at once ("next trial in 0.0s"). Now they wait for the trial and succeed."""
    state, call = flaky
    breaker = CircuitBreaker(
        "flaky", failure_threshold=2, open_timeout=0.3, half_open_max_calls=1, is_failure=dependency_failure
    )
    service_metrics.watch_breaker(SERVICE, breaker)

    def transitions(old: str, new: str) -> float:
        return value(
            "briefxai_circuit_breaker_transitions_total",
            service=SERVICE,
            breaker="flaky",
            **{"from": old, "to": new},
        )

    before = {pair: transitions(*pair) for pair in service_metrics.BREAKER_TRANSITIONS}
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await breaker.call(call, b"x", timeout=5)
        assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
    assert breaker.state is CircuitState.OPEN
    assert value("briefxai_circuit_breaker_state", service=SERVICE, breaker="flaky") == 1
    with pytest.raises(CircuitOpenError, match="circuit breaker flaky is open"):
        await breaker.call(call, b"x", timeout=5)
    assert state.calls == 2  # refused without calling the server

    state.down, state.delay = False, 0.2
    await asyncio.sleep(0.35)  # past the open timeout
    replies = await asyncio.gather(*(breaker.call(call, f"{i}".encode(), timeout=5) for i in range(4)))
    assert sorted(replies) == [b"ok:0", b"ok:1", b"ok:2", b"ok:3"]
    assert breaker.state is CircuitState.CLOSED
    (_, trial_end), *others = sorted(state.spans)
    assert len(others) == 3 and all(start >= trial_end for start, _ in others)  # they waited for the trial
    assert value("briefxai_circuit_breaker_state", service=SERVICE, breaker="flaky") == 0
    for pair in (("closed", "open"), ("open", "half_open"), ("half_open", "closed")):
        assert transitions(*pair) == before[pair] + 1


async def test_an_open_breaker_inside_the_retries_ends_them(
    flaky: tuple[Flaky, grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]],
) -> None:
    state, call = flaky
    breaker = CircuitBreaker(
        "flaky-retried", failure_threshold=2, open_timeout=60, is_failure=dependency_failure
    )
    retrier = Retrier(
        SERVICE,
        "flaky-retried",
        RetryPolicy(max_attempts=10, initial_delay=0.001, max_delay=0.01),
        is_retryable=lambda exc: (
            isinstance(exc, grpc.aio.AioRpcError) and grpc_retryable(exc.code().name, idempotent=True)
        ),
    )

    async def attempt() -> bytes:
        async with breaker.guarded():
            return await call(b"x", timeout=time_left())

    with pytest.raises(CircuitOpenError):
        await retrier.call(attempt, deadline=10)
    assert state.calls == 2


# ---- classification -------------------------------------------------------------------------------


def test_what_is_retried() -> None:
    for code in ("UNAVAILABLE", "RESOURCE_EXHAUSTED", "ABORTED"):
        assert grpc_retryable(code, idempotent=False)
    assert grpc_retryable("DEADLINE_EXCEEDED", idempotent=True)
    assert not grpc_retryable("DEADLINE_EXCEEDED", idempotent=False)
    for code in (
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "FAILED_PRECONDITION",
        "INTERNAL",
        "UNKNOWN",
        "PERMISSION_DENIED",
    ):
        assert not grpc_retryable(code, idempotent=True)
    assert grpc_breaker_failure("DEADLINE_EXCEEDED") and not grpc_breaker_failure("INVALID_ARGUMENT")
    assert all(http_retryable(status) for status in (408, 429, 500, 502, 503, 504))
    assert not any(http_retryable(status) for status in (400, 401, 403, 404, 409, 413, 422))


def test_transient_store_errors() -> None:
    sqlalchemy_exc = pytest.importorskip("sqlalchemy.exc")
    import sqlite3

    locked = sqlalchemy_exc.OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked"))
    missing = sqlalchemy_exc.OperationalError("SELECT ...", {}, sqlite3.OperationalError("no such table: x"))
    duplicate = sqlalchemy_exc.IntegrityError(
        "INSERT ...", {}, sqlite3.IntegrityError("UNIQUE constraint failed")
    )
    assert transient_store_error(locked)
    assert not transient_store_error(missing)
    assert not transient_store_error(duplicate)
    assert transient_store_error(sqlalchemy_exc.DisconnectionError("gone"))
    assert not transient_store_error(ValueError("database is locked"))


# ---- budgets and deadlines --------------------------------------------------------------------------


def test_the_retry_budget_is_a_share_of_the_calls_plus_a_minimum() -> None:
    now = [100.0]
    budget = RetryBudget(ratio=0.2, min_per_second=0.1, window=10, clock=lambda: now[0])
    for _ in range(20):
        budget.record_call()
    granted = sum(budget.try_retry() for _ in range(50))
    assert granted == 5  # 20% of 20 calls, plus 0.1/s over 10 s
    now[0] += 11  # the window has passed: only the minimum is left
    assert sum(budget.try_retry() for _ in range(50)) == 1


def test_retries_stop_when_the_budget_is_spent() -> None:
    calls = 0

    def down() -> str:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    retrier = Retrier(
        SERVICE,
        "budgeted",
        RetryPolicy(
            max_attempts=10, initial_delay=0.0, max_delay=0.0, budget_ratio=0.0, budget_min_per_second=0.3
        ),
        is_retryable=lambda exc: isinstance(exc, ConnectionError),
    )
    denied = value("briefxai_retries_denied_total", service=SERVICE, dependency="budgeted", reason="budget")
    for _ in range(3):
        with pytest.raises(ConnectionError):
            retrier.call_sync(down)
    assert calls == 3 + 3  # three calls, and the budget's three retries (0.3/s over 10 s)
    assert (
        value("briefxai_retries_denied_total", service=SERVICE, dependency="budgeted", reason="budget")
        == denied + 3
    )


def test_deadline_scopes_nest_and_the_earliest_wins() -> None:
    assert time_left() is None
    with deadline_scope(10):
        outer = time_left()
        assert outer is not None and 9 < outer <= 10
        with deadline_scope(60):
            inner = time_left()
            assert inner is not None and inner <= 10
        with deadline_scope(1):
            inner = time_left()
            assert inner is not None and inner <= 1
    assert time_left() is None


# ---- HTTP: the scripted OpenAI-compatible server ---------------------------------------------------


@pytest.fixture
async def chat(fake_openai: FakeOpenAI) -> AsyncIterator[ChatClient]:
    client = ChatClient(fake_openai.base_url, "", timeout_seconds=5, max_connections=4, provider="p")
    await client.start()
    yield client
    await client.close()


def endpoint(
    name: str, client: ChatClient, breaker: dict[str, Any] | None = None, **policy: Any
) -> GuardedEndpoint:
    guarded = GuardedEndpoint(
        SERVICE,
        name,
        LLMRetryPolicySettings.model_validate(policy).policy(),
        BreakerSettings.model_validate(breaker or {"failure_threshold": 100}),
    )
    guarded.client = client
    return guarded


async def ask(guarded: GuardedEndpoint, client: ChatClient) -> Any:
    async def attempt() -> Any:
        async with guarded.guarded():
            return await client.complete({"model": "m", "messages": [{"role": "user", "content": "hi"}]})

    return await guarded.call(attempt)


async def test_retry_after_is_waited_out(fake_openai: FakeOpenAI, chat: ChatClient) -> None:
    fake_openai.script_chat(Behaviour.rate_limited(retry_after=0.4))
    guarded = endpoint("retry-after", chat, initial_delay_ms=0, max_delay_ms=5000)
    retried = value("briefxai_retries_total", service=SERVICE, dependency="retry-after")
    await ask(guarded, chat)
    first, second = fake_openai.requests_to("chat")
    assert second.received_at - first.received_at >= 0.35  # the backoff alone (0 ms) would not wait
    assert value("briefxai_retries_total", service=SERVICE, dependency="retry-after") == retried + 1


async def test_a_client_error_is_not_retried(fake_openai: FakeOpenAI, chat: ChatClient) -> None:
    fake_openai.script_chat(Behaviour.server_error(400))
    guarded = endpoint("bad-request", chat, initial_delay_ms=0)
    with pytest.raises(LLMStatusError) as error:
        await ask(guarded, chat)
    assert error.value.status == 400
    assert len(fake_openai.requests_to("chat")) == 1
    assert guarded.breaker.state is CircuitState.CLOSED  # an answer, not a failure of the server


async def test_the_retry_budget_caps_the_attempts(fake_openai: FakeOpenAI, chat: ChatClient) -> None:
    fake_openai.script_chat(*[Behaviour.server_error(503)] * 20)
    guarded = endpoint(
        "budget", chat, max_attempts=10, initial_delay_ms=0, budget_ratio=0, budget_min_retries_per_second=0.2
    )
    for _ in range(2):
        with pytest.raises(LLMStatusError):
            await ask(guarded, chat)
    # 2 calls and the two retries the budget holds (0.2/s over 10 s), not 2 x 10 attempts
    assert len(fake_openai.requests_to("chat")) == 4


async def test_nothing_retries_past_the_deadline(fake_openai: FakeOpenAI, chat: ChatClient) -> None:
    fake_openai.script_chat(*[Behaviour.rate_limited(retry_after=0.4)] * 10)
    guarded = endpoint("deadline", chat, max_attempts=10, initial_delay_ms=0)
    denied = value("briefxai_retries_denied_total", service=SERVICE, dependency="deadline", reason="deadline")
    with deadline_scope(1.0), pytest.raises(LLMStatusError):
        await ask(guarded, chat)
    assert len(fake_openai.requests_to("chat")) <= 3  # at 0, 0.4, 0.8 s: a fourth would start past 1 s
    assert (
        value("briefxai_retries_denied_total", service=SERVICE, dependency="deadline", reason="deadline")
        == denied + 1
    )


async def test_a_longer_retry_after_than_allowed_ends_the_retries(
    fake_openai: FakeOpenAI, chat: ChatClient
) -> None:
    fake_openai.script_chat(Behaviour.rate_limited(retry_after=120))
    guarded = endpoint("too-long", chat, max_delay_ms=1000)
    with pytest.raises(LLMStatusError):
        await ask(guarded, chat)
    assert len(fake_openai.requests_to("chat")) == 1


async def test_an_open_breaker_fails_fast_naming_itself_and_a_probe_closes_it(
    fake_openai: FakeOpenAI, chat: ChatClient
) -> None:
    fake_openai.script_chat(*[Behaviour.server_error(500)] * 2)
    guarded = endpoint(
        "probed",
        chat,
        breaker={"failure_threshold": 2, "open_timeout_ms": 60_000, "probe_interval_ms": 500},
        max_attempts=1,
    )
    # the probes must not inherit the deadline of the call that opened the breaker (gone by the first)
    with deadline_scope(0.2):
        for _ in range(2):
            with pytest.raises(LLMStatusError):
                await ask(guarded, chat)
    assert guarded.breaker.state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError, match="circuit breaker probed is open"):
        await ask(guarded, chat)
    assert len(fake_openai.requests_to("chat")) == 2
    # GET /models answers: the probe counts as a successful trial, long before the open timeout
    for _ in range(100):
        if guarded.breaker.state is CircuitState.CLOSED:
            break
        await asyncio.sleep(0.05)
    assert guarded.breaker.state is CircuitState.CLOSED
    assert (await ask(guarded, chat))["choices"]
    await guarded.close()


# ---- configuration ---------------------------------------------------------------------------------


def test_policy_settings_in_the_reference_shape() -> None:
    policy = RetryPolicySettings.model_validate(
        {
            "max_attempts": 5,
            "initial_delay_ms": 1000,
            "max_delay_ms": 60000,
            "backoff_multiplier": 1.5,
            "jitter": True,
        }
    ).policy()
    assert (policy.max_attempts, policy.initial_delay, policy.max_delay, policy.multiplier) == (
        5,
        1.0,
        60.0,
        1.5,
    )
    with pytest.raises(ValueError):
        RetryPolicySettings.model_validate({"max_attempts": 5, "initial_delay": 1000})
