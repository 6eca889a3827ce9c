"""Analyses that ride out outages (:class:`OutageGuard`, wrapped around the pipeline's clients).

A downstream call of an analysis that fails as unavailable (after the client's own retries, or refused
by an open breaker) does not fail the analysis. The call waits, with
a growing jittered backoff (at least until the breaker lets a trial call through), and is made again
as soon as the downstream's health Watch reports SERVING (feature flag ``wait_for_health``); the
analysis stays RUNNING with a ``waiting for the <service> service ...`` warning. Work already
checkpointed is not redone. Only when the downstream stays unavailable for ``outage_budget_seconds``
does the analysis FAIL with UNAVAILABLE, naming the service and how long it waited. An analysis
resumed at startup first waits (within the same budget) for every downstream to be SERVING, so a
gateway that starts before its downstreams does not spend its retries on closed ports.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential

from briefxai_common.features import FeatureFlags, Flag
from briefxai_common.logging import get_logger
from briefxai_common.resilience import CircuitOpenError

from .downstream import (
    ClusteringClient,
    ClusteringLimits,
    DownstreamError,
    Downstreams,
    EmbeddedBatch,
    EmbeddingClient,
    EmbeddingModelInfo,
    FacetsClient,
)
from .models import ClusteringInput, ClusteringOutput, Conversation, FacetDefinition, FacetValue
from .progress import ProgressHub
from .settings import GatewaySettings

if TYPE_CHECKING:
    from .health_watch import DownstreamHealth

log = get_logger(__name__)

T = TypeVar("T")

WAIT_FOR_HEALTH = Flag(
    "wait_for_health",
    True,
    "An analysis waiting out a downstream outage retries as soon as the downstream's grpc.health Watch "
    "reports SERVING, and one resumed at startup waits for every downstream to be SERVING before it "
    "calls them; off: retries follow the backoff timer alone (for health reports that cannot be "
    "trusted, e.g. a Watch that follows one replica of several).",
)
GATEWAY_FLAGS = (WAIT_FOR_HEALTH,)
# The backoff between calls to a downstream that is down: full jitter, growing up to the maximum.
OUTAGE_BACKOFF_SECONDS = 1.0
OUTAGE_MAX_BACKOFF_SECONDS = 30.0
# The analysis whose pipeline makes the current downstream call (set by ``Scheduler._run``; the
# pipeline's tasks inherit it).
CURRENT_ANALYSIS: ContextVar[str] = ContextVar("briefxai_current_analysis", default="")


def _unavailable(exc: BaseException) -> bool:
    return isinstance(exc, DownstreamError) and exc.unavailable


class _Outage:
    """One downstream's outage as one analysis sees it."""

    def __init__(self, since: float) -> None:
        self.since = since
        self.wall = datetime.now(UTC)


class OutageGuard:
    """Wraps the pipeline's downstream clients so that their calls wait out outages (see the module
    docstring). ``settings.outage_budget_seconds`` and the ``wait_for_health`` flag are read at each
    decision, so a reload changes them for the waits in progress too."""

    def __init__(
        self,
        settings: GatewaySettings,
        hub: ProgressHub,
        health: DownstreamHealth | None = None,
        flags: FeatureFlags | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.hub = hub
        self.health = health
        self.flags = flags if flags is not None else FeatureFlags(GATEWAY_FLAGS, settings.features)
        self.clock = clock
        self._outages: dict[tuple[str, str], _Outage] = {}  # (analysis id, service) -> its outage

    @property
    def budget(self) -> float:
        return self.settings.outage_budget_seconds

    def clients(self, clients: Downstreams) -> Downstreams:
        """The same clients, each call guarded."""
        return Downstreams(
            facets=_GuardedFacets(clients.facets, self),
            embedding=_GuardedEmbedding(clients.embedding, self),
            clustering=_GuardedClustering(clients.clustering, self),
        )

    def _left(self, key: tuple[str, str]) -> float:
        """Seconds of the budget left to the outage of ``key`` (starting it now if it is new)."""
        outage = self._outages.setdefault(key, _Outage(self.clock()))
        return self.budget - (self.clock() - outage.since)

    def _waited(self, key: tuple[str, str]) -> float:
        outage = self._outages.get(key)
        return 0.0 if outage is None else self.clock() - outage.since

    def _note(self, key: tuple[str, str], reason: str) -> None:
        analysis_id, service = key
        outage = self._outages[key]
        since = outage.wall.strftime("%H:%M:%S UTC")
        self.hub.waiting(
            analysis_id,
            service,
            f"waiting for the {service} service ({reason}) since {since}; the analysis fails if it is "
            f"not back within {self.budget:g} s",
        )

    def _over(self, key: tuple[str, str]) -> None:
        outage = self._outages.pop(key, None)
        if outage is not None:
            self.hub.done_waiting(*key)
            log.info(
                "downstream_outage_over",
                analysis_id=key[0],
                downstream=key[1],
                waited_seconds=round(self.clock() - outage.since, 1),
            )

    def forget(self, analysis_id: str) -> None:
        """Drops the outages (and waiting notes) of an analysis that stopped running."""
        for key in [key for key in self._outages if key[0] == analysis_id]:
            del self._outages[key]
            self.hub.done_waiting(*key)

    async def call(self, service: str, fn: Callable[[], Awaitable[T]]) -> T:
        """``fn()``, made again while it fails as unavailable, until the outage budget is spent."""
        key = (CURRENT_ANALYSIS.get(), service)
        backoff = wait_random_exponential(multiplier=OUTAGE_BACKOFF_SECONDS, max=OUTAGE_MAX_BACKOFF_SECONDS)
        breaker_open = False

        def pause(state: RetryCallState) -> float:
            nonlocal breaker_open
            exc = state.outcome.exception() if state.outcome is not None else None
            cause = exc.__cause__ if exc is not None else None
            seconds = backoff(state)
            breaker_open = isinstance(cause, CircuitOpenError)
            if isinstance(cause, CircuitOpenError):
                seconds = max(seconds, cause.retry_after + 0.05)
            return max(0.0, min(seconds, self._left(key)))

        async def sleep(seconds: float) -> None:
            watcher = self.health.watcher(service) if self.health is not None else None
            if (
                watcher is None
                or breaker_open
                or watcher.serving
                or not self.flags.enabled(WAIT_FOR_HEALTH.name)
            ):
                await asyncio.sleep(seconds)
            else:
                await watcher.wait_serving(seconds)

        def waiting(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            assert isinstance(exc, DownstreamError)  # noqa: S101  invariant for mypy, not a check on input
            first = state.attempt_number == 1
            reason = "circuit breaker open" if exc.circuit_open else exc.code
            self._note(key, reason)
            (log.warning if first else log.info)(
                "downstream_outage_waiting",
                analysis_id=key[0],
                downstream=service,
                code=exc.code,
                circuit_open=exc.circuit_open,
                attempt=state.attempt_number,
                waited_seconds=round(self._waited(key), 1),
                budget_seconds=self.budget,
            )

        retrying = AsyncRetrying(
            retry=retry_if_exception(_unavailable),
            stop=lambda _: self._left(key) <= 0,
            wait=pause,
            sleep=sleep,
            before_sleep=waiting,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    result = await fn()
        except DownstreamError as exc:
            if not exc.unavailable or self.budget <= 0:
                self._outages.pop(key, None)
                raise
            waited = self._waited(key)
            self._outages.pop(key, None)
            self.hub.done_waiting(*key)
            raise DownstreamError(
                service,
                "UNAVAILABLE",
                f"still unavailable after waiting {waited:.0f} s (outage_budget_seconds {self.budget:g}); "
                f"last error: {exc.describe()}",
            ) from exc
        self._over(key)
        return result

    async def before_resume(self, analysis_id: str, services: Sequence[str]) -> None:
        """Waits (within the outage budget) until every one of ``services`` is SERVING: an analysis
        resumed at startup calls its downstreams only once they are up. A service still down when the
        budget runs out leaves its outage started, so its first failing call ends the analysis."""
        if self.health is None or self.budget <= 0 or not self.flags.enabled(WAIT_FOR_HEALTH.name):
            return
        for service in services:
            watcher = self.health.watcher(service)
            if watcher is None:
                continue
            key = (analysis_id, service)
            # A status not seen yet (UNKNOWN) gets a moment to arrive before it counts as an outage.
            if await watcher.wait_serving(min(1.0, self.budget)):
                continue
            self._left(key)
            self._note(key, watcher.status)
            log.warning(
                "analysis_resume_waiting", analysis_id=analysis_id, downstream=service, health=watcher.status
            )
            if await watcher.wait_serving(max(0.0, self._left(key))):
                self._over(key)


class _GuardedFacets:
    def __init__(self, client: FacetsClient, guard: OutageGuard) -> None:
        self._client = client
        self._guard = guard

    async def list_facets(self) -> list[FacetDefinition]:
        return await self._guard.call("facets", self._client.list_facets)

    async def providers(self) -> list[str]:
        return await self._guard.call("facets", self._client.providers)

    async def extract(
        self, conversations: Sequence[Conversation], facets: Sequence[str]
    ) -> list[list[FacetValue]]:
        return await self._guard.call("facets", lambda: self._client.extract(conversations, facets))


class _GuardedEmbedding:
    def __init__(self, client: EmbeddingClient, guard: OutageGuard) -> None:
        self._client = client
        self._guard = guard

    async def model_info(self) -> EmbeddingModelInfo:
        return await self._guard.call("embedding", self._client.model_info)

    async def embed(self, texts: Sequence[str], max_tokens: int = 0, model: str = "") -> EmbeddedBatch:
        return await self._guard.call("embedding", lambda: self._client.embed(texts, max_tokens, model))


class _GuardedClustering:
    def __init__(self, client: ClusteringClient, guard: OutageGuard) -> None:
        self._client = client
        self._guard = guard

    async def limits(self) -> ClusteringLimits:
        return await self._guard.call("clustering", self._client.limits)

    async def cluster(self, data: ClusteringInput) -> ClusteringOutput:
        # ``data.chunks`` makes a fresh iterator per call: a call made again streams every vector again.
        return await self._guard.call("clustering", lambda: self._client.cluster(data))
