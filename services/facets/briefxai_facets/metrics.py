"""Prometheus metrics of the facets work itself (the gRPC call metrics come from the bootstrap).

LLM requests (one per HTTP request to an OpenAI-compatible chat API, retries included), labelled by
``provider`` (the key in ``facets.providers``: ``openai`` or a key of ``llms``) and ``model``:

- ``briefxai_llm_requests_total{provider,model,outcome}``: ``ok``, ``rate_limited`` (429),
  ``client_error`` (other 4xx), ``server_error`` (5xx), ``timeout``, ``connection_error``,
  ``bad_response`` (a body that is not JSON) or ``error``; each outcome but ``ok`` also counts
  ``briefxai_errors_total{service="facets",kind="llm"}``.
- ``briefxai_llm_request_duration_seconds{provider,model}``.
- ``briefxai_llm_tokens_total{provider,model,direction}``: ``input``/``output`` tokens as the API's
  ``usage`` reports them.
- ``briefxai_llm_estimated_cost_total{provider,model}``: tokens times the provider's configured
  ``cost_per_1k_input_tokens``/``cost_per_1k_output_tokens`` (0 unless configured).

The provider chain, labelled by the provider names tagged on values (``heuristic``, ``openai:<model>``):

- ``briefxai_facets_failovers_total{from,to}``: facet values one provider could not give and the next
  provider was asked for.
- ``briefxai_facets_failed_values_total{provider,reason}``: facet values a provider could not give:
  ``invalid_answer`` (the LLM's answer was unusable after every attempt), an LLM request outcome
  (``timeout``, ``rate_limited``...), ``provider_error`` (the provider raised), ``no_value``,
  ``no_user_text``, ``unsupported_facet`` (the heuristic cannot answer custom facets), and, under
  ``provider="none"``, ``no_provider`` (no provider in the chain answers the facet).
- ``briefxai_facets_values_total{status}``: values returned by ExtractFacets, ``ok`` or ``failed``.

The facets service has no cache, so there are no cache metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from prometheus_client import Counter, Histogram

from briefxai_common import service_metrics

from .chat_client import LLMConnectionError, LLMResponseError, LLMStatusError

SERVICE = "facets"
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
LLM_FAILURE_REASONS = ("invalid_answer", *(o for o in LLM_OUTCOMES if o != "ok"))
CHAIN_FAILURE_REASONS = ("provider_error", "no_value")
HEURISTIC_FAILURE_REASONS = ("no_user_text", "unsupported_facet")

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
FAILOVERS = Counter(
    "briefxai_facets_failovers_total",
    "Facet values handed from a provider that could not give them to the next provider.",
    ["from", "to"],
)
FAILED_VALUES = Counter(
    "briefxai_facets_failed_values_total",
    "Facet values a provider could not give, by reason.",
    ["provider", "reason"],
)
VALUES = Counter("briefxai_facets_values_total", "Facet values returned by ExtractFacets.", ["status"])

for _status in ("ok", "failed"):
    VALUES.labels(_status)
FAILED_VALUES.labels("none", "no_provider")
service_metrics.declare(SERVICE, error_kinds=("llm",))


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
        self, provider: str, model: str, cost_per_1k_input: float = 0.0, cost_per_1k_output: float = 0.0
    ) -> None:
        self.provider, self.model = provider, model
        self._cost_in, self._cost_out = cost_per_1k_input, cost_per_1k_output
        self._seconds = LLM_SECONDS.labels(provider, model)
        self._input = LLM_TOKENS.labels(provider, model, "input")
        self._output = LLM_TOKENS.labels(provider, model, "output")
        self._cost = LLM_COST.labels(provider, model)
        for outcome in LLM_OUTCOMES:
            LLM_REQUESTS.labels(provider, model, outcome)

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
            service_metrics.count_error(SERVICE, "llm")
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


def declare_chain(providers: Sequence[str], llm_providers: Iterable[str] = ()) -> None:
    """Failover and failed-value series at 0 for a chain of ``providers`` (in order)."""
    llm = set(llm_providers)
    for i, source in enumerate(providers):
        for target in providers[i + 1 :]:
            FAILOVERS.labels(source, target)
        reasons = LLM_FAILURE_REASONS if source in llm else HEURISTIC_FAILURE_REASONS
        for reason in (*reasons, *CHAIN_FAILURE_REASONS):
            FAILED_VALUES.labels(source, reason)


def count_failovers(handed: Mapping[str, int], to: str) -> None:
    """``handed``: facet values the provider ``to`` is asked for, by the provider that failed them."""
    for source, count in handed.items():
        FAILOVERS.labels(source, to).inc(count)


def count_failed_values(provider: str, reasons: Mapping[str, int]) -> None:
    for reason, count in reasons.items():
        FAILED_VALUES.labels(provider, reason).inc(count)


def count_values(ok: int, failed: int) -> None:
    VALUES.labels("ok").inc(ok)
    VALUES.labels("failed").inc(failed)
