"""Builds the facets service for the shared bootstrap: provider chain, servicer, health info.

A reload (SIGHUP) that changes the provider settings (:data:`CHAIN_KEYS`) builds and starts a new chain
and swaps it in; calls already running finish on the old one, which is closed
:data:`OLD_CHAIN_CLOSE_SECONDS` later (or at stop). Custom facets change the facets offered and need a
restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc

from briefxai.facets.v1 import facets_pb2_grpc
from briefxai_common.bootstrap import Service
from briefxai_common.config import ConfigError
from briefxai_common.health import HealthReport
from briefxai_common.logging import get_logger

from .extractor import FacetExtractor
from .providers import FailoverChain, build_chain
from .servicer import SERVICE_NAME, FacetsServicer
from .settings import FacetsSettings
from .validation import Limits

log = get_logger(__name__)
# Settings a reload applies by building a new provider chain.
CHAIN_KEYS = frozenset({"providers", "openai", "llms", "heuristic", "retry_policies", "circuit_breakers"})
# A replaced chain is closed this long after the swap, so the calls still running on it can end.
OLD_CHAIN_CLOSE_SECONDS = 150.0


def build_service(settings: FacetsSettings) -> Service:
    """The facets service; providers start in ``start`` (health stays NOT_SERVING until then).

    Raises ConfigError when the configured facets or providers cannot work together.
    """
    try:
        chain = build_chain(settings)
    except ValueError as exc:
        raise ConfigError(f"invalid facets configuration: {exc}") from exc
    extractor = FacetExtractor(
        chain,
        Limits(
            max_conversations_per_request=settings.max_conversations_per_request,
            max_messages_per_conversation=settings.max_messages_per_conversation,
            max_chars_per_message=settings.max_chars_per_message,
        ),
    )
    servicer = FacetsServicer(extractor)

    def register(server: grpc.aio.Server) -> Sequence[str]:
        facets_pb2_grpc.add_FacetsServiceServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    def health_info() -> HealthReport:
        """Unhealthy until the providers have started; each provider available, degraded (its last
        calls failed, or its breaker is half-open) or unavailable (three in a row failed, or its breaker
        is open); each LLM provider's breaker (degraded unless closed) and negotiated
        ``response_format``."""
        return HealthReport(
            not_ready=[] if extractor.ready else ["providers not started"],
            providers=extractor.chain.provider_states(),
            circuit_breakers=extractor.chain.breaker_states() or None,
            details={
                "provider_order": extractor.providers(),
                "facets": [d.name for d in extractor.definitions()],
                "providers_ready": extractor.ready,
                "response_formats": extractor.chain.response_formats(),
            },
        )

    retired: dict[FailoverChain, asyncio.Task[None]] = {}

    async def close_later(old: FailoverChain) -> None:
        await asyncio.sleep(OLD_CHAIN_CLOSE_SECONDS)
        retired.pop(old, None)
        await old.close()

    async def reload(new: FacetsSettings, changed: frozenset[str]) -> list[str]:
        """A new provider chain from the changed provider settings (the facets offered stay as they are)."""
        keys = sorted(changed & CHAIN_KEYS)
        if not keys:
            return []
        try:
            fresh = build_chain(new.model_copy(update={"custom_facets": settings.custom_facets}))
        except ValueError as exc:
            raise ConfigError(f"invalid facets configuration: {exc}") from exc
        await fresh.start()
        old, extractor.chain = extractor.chain, fresh
        retired[old] = asyncio.create_task(close_later(old))
        log.info("facets_providers_reloaded", provider_order=fresh.names, changed=keys)
        return keys

    async def stop() -> None:
        for old, task in list(retired.items()):
            task.cancel()
            await old.close()
        retired.clear()
        await extractor.stop()

    return Service(
        name="facets",
        settings=settings,
        register=register,
        start=extractor.start,
        stop=stop,
        health_info=health_info,
        reload=reload,
        internal=True,
    )
