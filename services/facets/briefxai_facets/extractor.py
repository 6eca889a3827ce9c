"""The facets service's core: validate a request, run the provider chain, answer in input order."""

from __future__ import annotations

from collections.abc import Sequence

from .definitions import Conversation, FacetDefinition, FacetValue
from .providers import FailoverChain
from .validation import Limits, validate_request


class FacetExtractor:
    def __init__(self, chain: FailoverChain, limits: Limits) -> None:
        self.chain = chain
        self.catalog = chain.catalog
        self.limits = limits
        self.ready = False

    async def start(self) -> None:
        await self.chain.start()
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        await self.chain.close()

    def definitions(self) -> tuple[FacetDefinition, ...]:
        return self.catalog.all

    def providers(self) -> list[str]:
        return self.chain.names

    async def extract(
        self, conversations: Sequence[Conversation], facet_names: Sequence[str] = ()
    ) -> list[list[FacetValue]]:
        """One list of values per conversation, in input order; raises InvalidArgument on a bad request."""
        validate_request(conversations, facet_names, self.catalog, self.limits)
        return await self.chain.extract(conversations, facet_names)
