"""Builds the facets service for the shared bootstrap: provider chain, servicer, health info."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from briefxai.facets.v1 import facets_pb2_grpc
from briefxai_common.bootstrap import Service
from briefxai_common.config import ConfigError
from briefxai_common.health import HealthReport

from .extractor import FacetExtractor
from .providers import build_chain
from .servicer import SERVICE_NAME, FacetsServicer
from .settings import FacetsSettings
from .validation import Limits


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
        calls failed) or unavailable (three in a row failed), from its recent calls; each LLM provider's
        negotiated ``response_format`` in the details."""
        return HealthReport(
            not_ready=[] if extractor.ready else ["providers not started"],
            providers=chain.provider_states(),
            details={
                "provider_order": extractor.providers(),
                "facets": [d.name for d in extractor.definitions()],
                "providers_ready": extractor.ready,
                "response_formats": chain.response_formats(),
            },
        )

    return Service(
        name="facets",
        settings=settings,
        register=register,
        start=extractor.start,
        stop=extractor.stop,
        health_info=health_info,
    )
