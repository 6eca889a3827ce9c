"""gRPC adapter: protobuf <-> :class:`FacetExtractor`. Domain errors are mapped to status codes by the bootstrap."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

from briefxai.common.v1 import common_pb2
from briefxai.facets.v1 import facets_pb2, facets_pb2_grpc
from briefxai_common.conversations_proto import conversation_from_proto
from briefxai_common.resilience import deadline_scope

from .definitions import FacetDefinition, FacetType, FacetValue
from .extractor import FacetExtractor

SERVICE_NAME = facets_pb2.DESCRIPTOR.services_by_name["FacetsService"].full_name
Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

FACET_TYPES: dict[FacetType, facets_pb2.FacetType] = {
    FacetType.TEXT: facets_pb2.FACET_TYPE_TEXT,
    FacetType.NUMBER: facets_pb2.FACET_TYPE_NUMBER,
    FacetType.ENUM: facets_pb2.FACET_TYPE_ENUM,
}


def value_to_proto(value: FacetValue) -> common_pb2.FacetValue:
    message = common_pb2.FacetValue(
        facet=value.facet,
        provider=value.provider,
        reason=value.reason,
        failed=value.failed,
        error=value.error,
    )
    if not value.failed:
        if value.number is not None:
            message.number = value.number
        elif value.text is not None:
            message.text = value.text
    return message


def definition_to_proto(definition: FacetDefinition) -> facets_pb2.FacetDefinition:
    return facets_pb2.FacetDefinition(
        name=definition.name,
        question=definition.question,
        type=FACET_TYPES[definition.type],
        min=definition.min,
        max=definition.max,
        choices=definition.choices,
        builtin=definition.builtin,
    )


class FacetsServicer(facets_pb2_grpc.FacetsServiceServicer):
    def __init__(self, extractor: FacetExtractor) -> None:
        self.extractor = extractor

    async def ExtractFacets(
        self, request: facets_pb2.ExtractFacetsRequest, context: Context
    ) -> facets_pb2.ExtractFacetsResponse:
        conversations = [conversation_from_proto(c) for c in request.conversations]
        # LLM retries and waits end with the caller's deadline
        with deadline_scope(context.time_remaining()):
            results = await self.extractor.extract(conversations, list(request.facets))
        return facets_pb2.ExtractFacetsResponse(
            results=[
                facets_pb2.ConversationFacets(
                    conversation_id=c.id, values=[value_to_proto(v) for v in values]
                )
                for c, values in zip(conversations, results, strict=True)
            ]
        )

    async def ListFacets(
        self, request: facets_pb2.ListFacetsRequest, context: Context
    ) -> facets_pb2.ListFacetsResponse:
        limits = self.extractor.limits
        return facets_pb2.ListFacetsResponse(
            facets=[definition_to_proto(d) for d in self.extractor.definitions()],
            providers=self.extractor.providers(),
            max_conversations_per_request=limits.max_conversations_per_request,
            max_messages_per_conversation=limits.max_messages_per_conversation,
            max_chars_per_message=limits.max_chars_per_message,
        )
