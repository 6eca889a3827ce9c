"""gRPC adapter of ``briefxai.gateway.v1.AnalysisService``: protobuf <-> :class:`AnalysisManager`.

Domain errors (InvalidArgument, NotFound, ...) are mapped to status codes by the bootstrap's
interceptor. Large inline requests are converted off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeAlias

import grpc

from briefxai.common.v1 import common_pb2
from briefxai.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from briefxai_common.errors import InvalidArgument

from .convert import (
    analysis_to_pb,
    assign_outcome_to_pb,
    conversations_from_pb,
    options_from_pb,
    performance_report_to_pb,
    results_page_to_pb,
    window_from_pb,
)
from .manager import AnalysisManager
from .models import Conversation
from .sampler import PerformanceSampler
from .uploads import UploadHeader, UploadItem

SERVICE_NAME = gateway_pb2.DESCRIPTOR.services_by_name["AnalysisService"].full_name
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
# Inline requests with more conversations than this are converted in a worker thread.
CONVERT_IN_THREAD = 512


async def _converted(messages: Sequence[common_pb2.Conversation]) -> list[Conversation]:
    """Conversations of a request, converted in a worker thread when there are many."""
    if len(messages) > CONVERT_IN_THREAD:
        return await asyncio.to_thread(conversations_from_pb, messages)
    return conversations_from_pb(messages)


class AnalysisServicer(gateway_pb2_grpc.AnalysisServiceServicer):
    def __init__(
        self, manager: Callable[[], AnalysisManager], performance: Callable[[], PerformanceSampler]
    ) -> None:
        # Callables: the manager and the sampler are created when the service starts, after registration.
        self._manager = manager
        self._performance = performance

    @property
    def manager(self) -> AnalysisManager:
        return self._manager()

    async def CreateAnalysis(
        self, request: gateway_pb2.CreateAnalysisRequest, context: Context
    ) -> gateway_pb2.CreateAnalysisResponse:
        conversations = await _converted(request.conversations)
        analysis = await self.manager.create(
            conversations, options_from_pb(request.options), request.request_id
        )
        return gateway_pb2.CreateAnalysisResponse(analysis=analysis_to_pb(analysis))

    async def UploadAnalysis(
        self, request_iterator: AsyncIterator[gateway_pb2.UploadAnalysisRequest], context: Context
    ) -> gateway_pb2.UploadAnalysisResponse:
        async def items() -> AsyncIterator[UploadItem]:
            index = 0
            async for message in request_iterator:
                kind = message.WhichOneof("payload")
                if kind == "header":
                    yield UploadHeader(options_from_pb(message.header.options), message.header.request_id)
                elif kind == "batch":
                    yield await _converted(message.batch.conversations)
                else:
                    raise InvalidArgument(
                        "payload", f"message {index} of the stream has neither header nor batch"
                    )
                index += 1

        analysis = await self.manager.upload(items())
        return gateway_pb2.UploadAnalysisResponse(analysis=analysis_to_pb(analysis))

    async def GetAnalysis(
        self, request: gateway_pb2.GetAnalysisRequest, context: Context
    ) -> gateway_pb2.GetAnalysisResponse:
        analysis = await self.manager.get(request.id)
        return gateway_pb2.GetAnalysisResponse(analysis=analysis_to_pb(analysis))

    async def ListAnalyses(
        self, request: gateway_pb2.ListAnalysesRequest, context: Context
    ) -> gateway_pb2.ListAnalysesResponse:
        analyses, token = await self.manager.list(request.page_size, request.page_token)
        return gateway_pb2.ListAnalysesResponse(
            analyses=[analysis_to_pb(a) for a in analyses], next_page_token=token
        )

    async def WatchAnalysis(
        self, request: gateway_pb2.WatchAnalysisRequest, context: Context
    ) -> AsyncIterator[gateway_pb2.WatchAnalysisResponse]:
        async for update in self.manager.watch(request.id):
            yield gateway_pb2.WatchAnalysisResponse(
                analysis=analysis_to_pb(update.analysis), rate=update.rate, eta_seconds=update.eta_seconds
            )

    async def CancelAnalysis(
        self, request: gateway_pb2.CancelAnalysisRequest, context: Context
    ) -> gateway_pb2.CancelAnalysisResponse:
        analysis = await self.manager.cancel(request.id)
        return gateway_pb2.CancelAnalysisResponse(analysis=analysis_to_pb(analysis))

    async def DeleteAnalysis(
        self, request: gateway_pb2.DeleteAnalysisRequest, context: Context
    ) -> gateway_pb2.DeleteAnalysisResponse:
        await self.manager.delete(request.id)
        return gateway_pb2.DeleteAnalysisResponse()

    async def GetAnalysisResults(
        self, request: gateway_pb2.GetAnalysisResultsRequest, context: Context
    ) -> gateway_pb2.GetAnalysisResultsResponse:
        revision = request.revision if request.HasField("revision") else None
        page = await self.manager.results(request.id, request.page_size, request.page_token, revision)
        return results_page_to_pb(page)

    async def AssignConversations(
        self, request: gateway_pb2.AssignConversationsRequest, context: Context
    ) -> gateway_pb2.AssignConversationsResponse:
        conversations = await _converted(request.conversations)
        outcome = await self.manager.assign(request.id, conversations, request.request_id)
        return assign_outcome_to_pb(outcome)

    async def GetPerformanceReport(
        self, request: gateway_pb2.GetPerformanceReportRequest, context: Context
    ) -> gateway_pb2.GetPerformanceReportResponse:
        report = await self._performance().report(window_from_pb(request))
        return performance_report_to_pb(report)
