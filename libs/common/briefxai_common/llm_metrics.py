"""The Prometheus series of calls to an OpenAI-compatible chat API, the same in every service that calls
one (facets, cluster naming); labelled by ``provider`` (the service's name for the endpoint) and ``model``:

- ``briefxai_llm_requests_total{provider,model,outcome}``: ``ok``, ``rate_limited`` (429),
  ``client_error`` (other 4xx), ``server_error`` (5xx), ``timeout``, ``connection_error``,
  ``bad_response`` (a body that is not JSON) or ``error``; each outcome but ``ok`` also counts
  ``briefxai_errors_total{service,kind="llm"}``.
- ``briefxai_llm_request_duration_seconds{provider,model}``.
- ``briefxai_llm_tokens_total{provider,model,direction}``: ``input``/``output`` tokens as the API's
  ``usage`` reports them.
- ``briefxai_llm_estimated_cost_total{provider,model}``: tokens times the configured prices per 1k
  tokens (0 unless configured).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

from prometheus_client import Counter, Histogram

from briefxai_common import service_metrics
from briefxai_common.llm import LLMConnectionError, LLMResponseError, LLMStatusError

T = TypeVar("T")

LLM_OUTCOMES = (
    "ok",
    "rate_limited",
    "client_error",
    "server_error",
    "timeout",
    "connection_error",
    "bad_response",
    "error",
)

LLM_REQUESTS = Counter(
    "briefxai_llm_requests_total", "LLM HTTP requests by outcome.", ["provider", "model", "outcome"]
)
LLM_SECONDS = Histogram(
    "briefxai_llm_request_duration_seconds",
    "Wall time of one LLM HTTP request.",
    ["provider", "model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0),
)
LLM_TOKENS = Counter(
    "briefxai_llm_tokens_total", "LLM tokens as reported by the API.", ["provider", "model", "direction"]
)
LLM_COST = Counter(
    "briefxai_llm_estimated_cost_total",
    "Estimated LLM cost from the configured prices per 1k tokens (0 unless configured).",
    ["provider", "model"],
)


def llm_outcome(error: BaseException) -> str:
    """The ``outcome`` (and failed-value reason) of an LLM request that raised ``error``."""
    if isinstance(error, LLMStatusError):
        if error.status == 429:
            return "rate_limited"
        return "server_error" if error.status >= 500 else "client_error"
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, LLMConnectionError):
        return "connection_error"
    if isinstance(error, LLMResponseError):
        return "bad_response"
    return "error"


def _tokens(usage: Mapping[str, Any], key: str) -> int:
    value = usage.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class LLMMeter:
    """The LLM series of one provider and model, created at 0 when the provider is built."""

    def __init__(
        self,
        provider: str,
        model: str,
        cost_per_1k_input: float = 0.0,
        cost_per_1k_output: float = 0.0,
        *,
        service: str,
    ) -> None:
        self.provider, self.model, self.service = provider, model, service
        self._cost_in, self._cost_out = cost_per_1k_input, cost_per_1k_output
        self._seconds = LLM_SECONDS.labels(provider, model)
        self._input = LLM_TOKENS.labels(provider, model, "input")
        self._output = LLM_TOKENS.labels(provider, model, "output")
        self._cost = LLM_COST.labels(provider, model)
        for outcome in LLM_OUTCOMES:
            LLM_REQUESTS.labels(provider, model, outcome)
        service_metrics.declare(service, error_kinds=("llm",))

    async def request(self, call: Awaitable[T]) -> T:
        """Awaits ``call`` (one HTTP request) and records its outcome, latency, tokens and cost."""
        began = time.perf_counter()
        try:
            response = await call
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._seconds.observe(time.perf_counter() - began)
            LLM_REQUESTS.labels(self.provider, self.model, llm_outcome(exc)).inc()
            service_metrics.count_error(self.service, "llm")
            raise
        self._seconds.observe(time.perf_counter() - began)
        LLM_REQUESTS.labels(self.provider, self.model, "ok").inc()
        usage = response.get("usage") if isinstance(response, dict) else None
        if isinstance(usage, dict):
            tokens_in, tokens_out = _tokens(usage, "prompt_tokens"), _tokens(usage, "completion_tokens")
            self._input.inc(tokens_in)
            self._output.inc(tokens_out)
            self._cost.inc((tokens_in * self._cost_in + tokens_out * self._cost_out) / 1000)
        return response
