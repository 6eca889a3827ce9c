"""The provider interface and the failover chain that runs providers in order.

A provider answers some facets for a batch of :class:`Job` s. The chain asks the first provider for
every facet it supports; whatever it cannot give (unsupported, or a failed value) goes to the next
provider, and so on. A facet no provider could answer comes back as a failed value whose error lists
what each provider said. Every value is tagged with the provider that made it.

Health is known passively and actively: each LLM provider's circuit breaker (opened by failing requests,
probed with ``GET /models`` while not closed, see :class:`~briefxai_common.llm.GuardedEndpoint`) and
each provider's recent outcomes. Failovers are counted with their outcome
(``briefxai_failovers_total{service="facets"}``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

from briefxai_common.health import AVAILABLE, DEGRADED, UNAVAILABLE, OutcomeTracker
from briefxai_common.logging import get_logger
from briefxai_common.resilience import CircuitState

from . import metrics
from .definitions import Conversation, FacetCatalog, FacetDefinition, FacetValue, Job
from .heuristic import HeuristicProvider
from .openai_provider import OpenAIProvider
from .settings import FacetsSettings

log = get_logger(__name__)


class Provider(Protocol):
    """Something that produces facet values: the offline heuristics, or an LLM."""

    @property
    def name(self) -> str:
        """Tag put on every value, e.g. ``heuristic`` or ``openai:gpt-4o-mini``."""
        ...

    def supports(self, facet: FacetDefinition) -> bool:
        """Whether this provider should be asked for ``facet`` at all."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def extract(self, jobs: Sequence[Job]) -> list[dict[str, FacetValue]]:
        """For each job, in order, a value (possibly failed) for each of the job's facets."""
        ...


class FailoverChain:
    """Runs providers in order; each facet's value comes from the first provider that gives a valid one."""

    def __init__(self, providers: Sequence[Provider], catalog: FacetCatalog) -> None:
        if not providers:
            raise ValueError("the provider chain needs at least one provider")
        self.providers = tuple(providers)
        self.catalog = catalog
        # Each provider's recent calls (all values failed = a failed call), for /health's providers.
        self.outcomes = {p.name: OutcomeTracker() for p in self.providers}
        metrics.declare_chain(self.names, [p.name for p in self.providers if isinstance(p, OpenAIProvider)])

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.providers]

    async def start(self) -> None:
        for provider in self.providers:
            await provider.start()

    def _record(self, provider: str, asked: int, failed: int) -> None:
        if failed < asked:
            self.outcomes[provider].success()
        else:
            self.outcomes[provider].failure(f"all {asked} values failed")

    def response_formats(self) -> dict[str, dict[str, Any]]:
        """Per LLM provider: the configured and the negotiated ``response_format``, and the downgrades."""
        return {p.name: p.response_format_state() for p in self.providers if isinstance(p, OpenAIProvider)}

    def provider_states(self) -> dict[str, str]:
        """``available``, ``degraded`` or ``unavailable`` for each provider: ``unavailable`` while its
        breaker is open, at best ``degraded`` while half-open, else from its recent calls."""
        states = {name: tracker.status for name, tracker in self.outcomes.items()}
        for provider in self.providers:
            if isinstance(provider, OpenAIProvider):
                breaker = provider.breaker_state
                if breaker is CircuitState.OPEN:
                    states[provider.name] = UNAVAILABLE
                elif breaker is CircuitState.HALF_OPEN and states[provider.name] == AVAILABLE:
                    states[provider.name] = DEGRADED
        return states

    def breaker_states(self) -> dict[str, str]:
        """Each LLM provider's circuit breaker, by the provider's key (``closed``, ``open``, ``half_open``)."""
        return {p.key: p.breaker_state.label for p in self.providers if isinstance(p, OpenAIProvider)}

    async def close(self) -> None:
        for provider in self.providers:
            await provider.close()

    async def extract(
        self, conversations: Sequence[Conversation], facet_names: Sequence[str] = ()
    ) -> list[list[FacetValue]]:
        """Values for each conversation (input order), each list in facet order (built-ins first)."""
        facets = self.catalog.select(facet_names)
        found: list[dict[str, FacetValue]] = [{} for _ in conversations]
        errors: list[dict[str, list[str]]] = [{} for _ in conversations]
        failed_by: list[dict[str, str]] = [{} for _ in conversations]  # facet -> provider that last failed it
        for provider in self.providers:
            indices: list[int] = []
            jobs: list[Job] = []
            for i, conversation in enumerate(conversations):
                wanted = tuple(f for f in facets if f.name not in found[i] and provider.supports(f))
                if wanted:
                    indices.append(i)
                    jobs.append(Job(conversation, wanted))
            if not jobs:
                continue
            handed = [
                (i, f.name, failed_by[i][f.name])
                for i, j in zip(indices, jobs, strict=True)
                for f in j.facets
                if f.name in failed_by[i]
            ]
            reasons: Counter[str] = Counter()
            try:
                outputs = await provider.extract(jobs)
            except Exception as exc:  # one provider's fault must not fail the request: the next one tries
                log.warning("provider_failed", provider=provider.name, jobs=len(jobs), error=repr(exc))
                error = f"{type(exc).__name__}: {exc}"
                outputs = [
                    {
                        f.name: FacetValue.failure(f.name, provider.name, error, "provider_error")
                        for f in j.facets
                    }
                    for j in jobs
                ]
            for i, job, output in zip(indices, jobs, outputs, strict=True):
                for f in job.facets:
                    value = output.get(f.name)
                    if value is None:
                        errors[i].setdefault(f.name, []).append(f"{provider.name}: gave no value")
                        reasons["no_value"] += 1
                        failed_by[i][f.name] = provider.name
                    elif value.failed:
                        errors[i].setdefault(f.name, []).append(f"{provider.name}: {value.error}")
                        reasons[value.failure_reason or "error"] += 1
                        failed_by[i][f.name] = provider.name
                    else:
                        found[i][f.name] = value
            metrics.count_failed_values(provider.name, reasons)
            metrics.count_failovers(
                Counter((source, "ok" if facet in found[i] else "failed") for i, facet, source in handed),
                provider.name,
            )
            self._record(provider.name, asked=sum(len(j.facets) for j in jobs), failed=sum(reasons.values()))
        results: list[list[FacetValue]] = []
        unanswered = 0
        for i in range(len(conversations)):
            row = []
            for f in facets:
                value = found[i].get(f.name)
                if value is None:
                    said = errors[i].get(f.name)
                    if not said:
                        unanswered += 1
                        said = ["no provider in the chain answers this facet"]
                    value = FacetValue.failure(f.name, self.providers[-1].name, "; ".join(said))
                row.append(value)
            results.append(row)
        failed = sum(1 for row in results for value in row if value.failed)
        metrics.count_values(ok=sum(len(row) for row in results) - failed, failed=failed)
        metrics.count_failed_values("none", {"no_provider": unanswered})
        return results


def build_chain(settings: FacetsSettings) -> FailoverChain:
    """The providers ``settings.providers`` names, in that order, over built-in plus custom facets."""
    providers: list[Provider] = []
    for name in settings.providers:
        if name == "heuristic":
            providers.append(HeuristicProvider(settings.heuristic))
        else:
            llm = settings.llm_settings(name)
            providers.append(
                OpenAIProvider(
                    llm,
                    summary_max_chars=settings.heuristic.summary_max_chars,
                    phone_region=settings.heuristic.phone_region,
                    provider=name,
                    retry_policy=llm.retry_policy(settings.retry_policies.llm_provider),
                    breaker=settings.circuit_breakers.llm_provider,
                    redact_external=settings.privacy.redact_external,
                )
            )
    return FailoverChain(providers, FacetCatalog(settings.custom_definitions()))
