"""Checks of a new analysis before anything is stored: the options as the client sent them, resolved
against the defaults, the clustering service's limits and the facet names the facets service offers;
inline conversations."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from briefxai_common.logging import get_logger

from .downstream import ClusteringLimits, DownstreamError, Downstreams
from .models import AnalysisOptions, Conversation, RequestedOptions
from .settings import GatewaySettings
from .validation import Limits, Violations, check_conversation_count, check_conversations, resolve_options

__all__ = ["Intake", "RequestedOptions"]

T = TypeVar("T")
log = get_logger(__name__)


class Intake:
    """Resolves requested options and checks inline conversations, adding to a request's violations."""

    def __init__(self, settings: GatewaySettings, clients: Downstreams, limits: Limits) -> None:
        self.settings = settings
        self.clients = clients
        self.limits = limits

    async def _ask(self, what: str, call: Callable[[], Awaitable[T]]) -> T | None:
        """A metadata lookup within one deadline (retries included), so a create never waits long on it;
        None when the service cannot be asked right now (it checks the request itself later)."""
        try:
            async with asyncio.timeout(self.settings.metadata_deadline_seconds):
                return await call()
        except (DownstreamError, TimeoutError) as exc:
            reason = exc.describe() if isinstance(exc, DownstreamError) else f"{what} timed out"
            log.warning("options_unchecked", lookup=what, error=reason)
            return None

    async def _known_facets(self, requested: RequestedOptions) -> list[str] | None:
        if not requested.facets and not self.settings.defaults.facets:
            return []
        definitions = await self._ask("ListFacets", self.clients.facets.list_facets)
        return None if definitions is None else [d.name for d in definitions]

    async def _clustering_limits(self, requested: RequestedOptions) -> ClusteringLimits | None:
        if requested.k is None and requested.hierarchy_depth is None:
            return None
        return await self._ask("GetLimits", self.clients.clustering.limits)

    async def resolve(
        self, requested: RequestedOptions, violations: Violations, prefix: str
    ) -> AnalysisOptions:
        """The options to store, defaults applied; problems go to ``violations`` under ``prefix``."""
        known, limits = await asyncio.gather(
            self._known_facets(requested), self._clustering_limits(requested)
        )
        return resolve_options(
            requested,
            defaults=self.settings.defaults,
            clustering_limits=limits,
            known_facets=known,
            violations=violations,
            prefix=prefix,
        )

    def check_inline(self, conversations: Sequence[Conversation], violations: Violations) -> None:
        """Checks the count and (when within the limit) every field of inline conversations."""
        check_conversation_count(len(conversations), self.limits, violations, "conversations")
        if len(conversations) <= self.limits.max_conversations:
            check_conversations(conversations, self.limits, violations)
