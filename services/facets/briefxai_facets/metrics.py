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

- ``briefxai_failovers_total{service="facets",from,to,outcome}``: facet values one provider could not
  give and the next provider was asked for, by whether it gave them (``ok``) or not (``failed``).
- ``briefxai_facets_failed_values_total{provider,reason}``: facet values a provider could not give:
  ``invalid_answer`` (the LLM's answer was unusable after every attempt), an LLM request outcome
  (``timeout``, ``rate_limited``...), ``circuit_open`` (the provider's breaker refused the request),
  ``provider_error`` (the provider raised), ``no_value``,
  ``no_user_text``, ``unsupported_facet`` (the heuristic cannot answer custom facets), and, under
  ``provider="none"``, ``no_provider`` (no provider in the chain answers the facet).
- ``briefxai_facets_values_total{status}``: values returned by ExtractFacets, ``ok`` or ``failed``.

The LLM series (``briefxai_llm_*``, and ``briefxai_errors_total{service="facets",kind="llm"}``) are
:mod:`briefxai_common.llm_metrics`'s, the same the clustering service's LLM namer records into; each
LLM provider's breaker is ``briefxai_circuit_breaker_state{service="facets",breaker=<its key>}`` (and
its transitions), its retries ``briefxai_retries_total{service="facets",dependency=<its key>}``
(:mod:`briefxai_common.service_metrics`).

The facets service has no cache, so there are no cache metrics.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from prometheus_client import Counter

from briefxai_common import service_metrics
from briefxai_common.llm_metrics import LLM_OUTCOMES, llm_outcome
from briefxai_common.resilience import CircuitOpenError

SERVICE = "facets"

LLM_FAILURE_REASONS = ("invalid_answer", "circuit_open", *(o for o in LLM_OUTCOMES if o != "ok"))
CHAIN_FAILURE_REASONS = ("provider_error", "no_value")
HEURISTIC_FAILURE_REASONS = ("no_user_text", "unsupported_facet")

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


def failure_reason(error: BaseException) -> str:
    """The ``reason`` of a value an LLM provider could not give because of ``error``."""
    return "circuit_open" if isinstance(error, CircuitOpenError) else llm_outcome(error)


def declare_chain(providers: Sequence[str], llm_providers: Iterable[str] = ()) -> None:
    """Failover and failed-value series at 0 for a chain of ``providers`` (in order)."""
    llm = set(llm_providers)
    service_metrics.declare_failovers(SERVICE, providers)
    for source in providers:
        reasons = LLM_FAILURE_REASONS if source in llm else HEURISTIC_FAILURE_REASONS
        for reason in (*reasons, *CHAIN_FAILURE_REASONS):
            FAILED_VALUES.labels(source, reason)


def count_failovers(outcomes: Mapping[tuple[str, str], int], to: str) -> None:
    """``outcomes``: facet values the provider ``to`` was asked for, by (the provider that failed them,
    ``ok`` if ``to`` gave them else ``failed``)."""
    for (source, outcome), count in outcomes.items():
        service_metrics.count_failover(SERVICE, source, to, outcome, count)


def count_failed_values(provider: str, reasons: Mapping[str, int]) -> None:
    for reason, count in reasons.items():
        FAILED_VALUES.labels(provider, reason).inc(count)


def count_values(ok: int, failed: int) -> None:
    VALUES.labels("ok").inc(ok)
    VALUES.labels("failed").inc(failed)
