"""The failover chain: order of providers, fall-through of failed and unsupported values, faults."""

from __future__ import annotations

from collections.abc import Sequence

from briefxai_facets.definitions import (
    Conversation,
    FacetCatalog,
    FacetDefinition,
    FacetType,
    FacetValue,
    Job,
    Message,
)
from briefxai_facets.heuristic import HeuristicProvider
from briefxai_facets.providers import FailoverChain
from briefxai_facets.settings import HeuristicSettings

CONVERSATIONS = [
    Conversation("a", "", [Message("user", "How do I reset my password? It says my account is locked.")]),
    Conversation("b", "", [Message("user", "Bonjour, je voudrais annuler mon abonnement, s'il vous plaît.")]),
]


class FailingProvider:
    """A provider whose backend is down: every call raises."""

    name = "broken"

    def supports(self, facet: FacetDefinition) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def extract(self, jobs: Sequence[Job]) -> list[dict[str, FacetValue]]:
        raise ConnectionError("backend unreachable")


class LanguageOnlyProvider:
    """Answers ``language`` (always "xx") for conversation "a" only and fails it for the others."""

    name = "lang"

    def supports(self, facet: FacetDefinition) -> bool:
        return facet.name == "language"

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def extract(self, jobs: Sequence[Job]) -> list[dict[str, FacetValue]]:
        assert all([f.name for f in job.facets] == ["language"] for job in jobs)
        return [
            {"language": FacetValue("language", self.name, text="xx")}
            if job.conversation.id == "a"
            else {"language": FacetValue.failure("language", self.name, "not sure")}
            for job in jobs
        ]


async def test_values_come_from_the_first_provider_that_answers() -> None:
    heuristic = HeuristicProvider(HeuristicSettings())
    chain = FailoverChain([LanguageOnlyProvider(), heuristic], FacetCatalog())
    await chain.start()
    try:
        rows = await chain.extract(CONVERSATIONS, ["language", "task"])
    finally:
        await chain.close()
    a, b = ({v.facet: v for v in row} for row in rows)
    assert (a["language"].provider, a["language"].text) == ("lang", "xx")
    assert (b["language"].provider, b["language"].text) == ("heuristic", "fr")
    assert a["task"].provider == b["task"].provider == "heuristic"
    assert chain.names == ["lang", "heuristic"]


async def test_a_provider_fault_falls_through_and_is_reported() -> None:
    custom = FacetDefinition("topic", "What is the topic?", FacetType.TEXT)
    chain = FailoverChain([FailingProvider(), HeuristicProvider(HeuristicSettings())], FacetCatalog([custom]))
    await chain.start()
    try:
        [row, _] = await chain.extract(CONVERSATIONS)
    finally:
        await chain.close()
    values = {v.facet: v for v in row}
    assert values["task"].provider == "heuristic" and values["task"].text == "account_billing"
    topic = values["topic"]
    assert topic.failed
    assert topic.error.startswith("broken: ConnectionError: backend unreachable; heuristic: ")
