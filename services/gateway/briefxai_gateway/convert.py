"""Protobuf <-> domain translation shared by the servicer (public API) and the downstream clients."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import code_pb2, status_pb2

from briefxai.clustering.v1 import clustering_pb2
from briefxai.common.v1 import common_pb2
from briefxai.facets.v1 import facets_pb2
from briefxai.gateway.v1 import gateway_pb2
from briefxai_common.conversations_proto import conversation_from_proto, conversation_to_proto

from .models import (
    Analysis,
    AnalysisOptions,
    AnalysisState,
    ClusteringChunk,
    ClusteringInput,
    ClusteringOutput,
    ClusterNode,
    ClusterWithFacets,
    Conversation,
    ConversationResult,
    EmbedTextMode,
    FacetDefinition,
    FacetDistribution,
    FacetType,
    FacetValue,
    RequestedOptions,
    ResultsPage,
    Stage,
)
from .performance import MemoryReport, PerformanceReport, RpcReport, StageReport
from .revisions import AssignOutcome

STATE_TO_PB = {
    AnalysisState.PENDING: gateway_pb2.ANALYSIS_STATE_PENDING,
    AnalysisState.RUNNING: gateway_pb2.ANALYSIS_STATE_RUNNING,
    AnalysisState.SUCCEEDED: gateway_pb2.ANALYSIS_STATE_SUCCEEDED,
    AnalysisState.FAILED: gateway_pb2.ANALYSIS_STATE_FAILED,
    AnalysisState.CANCELLED: gateway_pb2.ANALYSIS_STATE_CANCELLED,
}
STAGE_TO_PB = {
    Stage.VALIDATE: gateway_pb2.STAGE_VALIDATE,
    Stage.FACETS: gateway_pb2.STAGE_FACETS,
    Stage.EMBED: gateway_pb2.STAGE_EMBED,
    Stage.CLUSTER: gateway_pb2.STAGE_CLUSTER,
    Stage.STORE: gateway_pb2.STAGE_STORE,
}
EMBED_TEXT_FROM_PB = {
    gateway_pb2.EMBED_TEXT_CONVERSATION: EmbedTextMode.CONVERSATION,
    gateway_pb2.EMBED_TEXT_USER_MESSAGES: EmbedTextMode.USER_MESSAGES,
    gateway_pb2.EMBED_TEXT_FIRST_USER_MESSAGE: EmbedTextMode.FIRST_USER_MESSAGE,
    gateway_pb2.EMBED_TEXT_REQUEST_SUMMARY: EmbedTextMode.REQUEST_SUMMARY,
}
EMBED_TEXT_TO_PB = {mode: value for value, mode in EMBED_TEXT_FROM_PB.items()}
FACET_TYPE_FROM_PB = {
    facets_pb2.FACET_TYPE_TEXT: FacetType.TEXT,
    facets_pb2.FACET_TYPE_NUMBER: FacetType.NUMBER,
    facets_pb2.FACET_TYPE_ENUM: FacetType.ENUM,
}


# -- conversations ------------------------------------------------------------------------------


# The shared adapter (unknown or unspecified roles become "", which validation reports).
conversation_from_pb = conversation_from_proto
conversation_to_pb = conversation_to_proto


def conversations_from_pb(messages: Sequence[common_pb2.Conversation]) -> list[Conversation]:
    return [conversation_from_proto(m) for m in messages]


# -- options ------------------------------------------------------------------------------------


def _present(message: gateway_pb2.AnalysisOptions, name: str) -> int | None:
    return int(getattr(message, name)) if message.HasField(name) else None  # type: ignore[arg-type]


def options_from_pb(message: gateway_pb2.AnalysisOptions) -> RequestedOptions:
    """The client's values; None where an optional field is unset."""
    embed_value = message.embed_text
    return RequestedOptions(
        facets=list(message.facets),
        k=_present(message, "k"),
        hierarchy_depth=_present(message, "hierarchy_depth"),
        min_cluster_size=_present(message, "min_cluster_size"),
        min_distinct_users=_present(message, "min_distinct_users"),
        seed=_present(message, "seed"),
        embed_text=EMBED_TEXT_FROM_PB.get(embed_value),
        embed_text_known=embed_value == gateway_pb2.EMBED_TEXT_UNSPECIFIED
        or embed_value in EMBED_TEXT_FROM_PB,
        display_name=message.display_name,
        embed_token_budget=_present(message, "embed_token_budget"),
    )


def options_to_pb(options: AnalysisOptions) -> gateway_pb2.AnalysisOptions:
    """The stored options; a clustering option left to the clustering service's default stays unset."""
    return gateway_pb2.AnalysisOptions(
        facets=options.facets,
        k=options.k,
        hierarchy_depth=options.hierarchy_depth,
        min_cluster_size=options.min_cluster_size,
        min_distinct_users=options.min_distinct_users,
        seed=options.seed,
        embed_text=EMBED_TEXT_TO_PB[options.embed_text],
        display_name=options.display_name,
        embed_token_budget=options.embed_token_budget or None,
    )


# -- analyses -----------------------------------------------------------------------------------


def _timestamp(value: object) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)  # type: ignore[arg-type]
    return stamp


def stage_progress_to_pb(analysis: Analysis) -> list[gateway_pb2.StageProgress]:
    return [
        gateway_pb2.StageProgress(stage=STAGE_TO_PB[p.stage], done=p.done, total=p.total)
        for p in analysis.stage_progress()
    ]


def error_status_to_pb(analysis: Analysis) -> status_pb2.Status | None:
    """google.rpc.Status of a failed analysis; UNKNOWN for failures stored before codes were kept."""
    if not analysis.error:
        return None
    code = (
        getattr(code_pb2, analysis.error_code, code_pb2.UNKNOWN) if analysis.error_code else code_pb2.UNKNOWN
    )
    return status_pb2.Status(code=code, message=analysis.error)


def analysis_to_pb(analysis: Analysis) -> gateway_pb2.Analysis:
    return gateway_pb2.Analysis(
        id=analysis.id,
        state=STATE_TO_PB[analysis.state],
        options=options_to_pb(analysis.options),
        request_id=analysis.request_id,
        conversation_count=analysis.conversation_count,
        create_time=_timestamp(analysis.create_time),
        update_time=_timestamp(analysis.update_time),
        error=error_status_to_pb(analysis),
        stage=STAGE_TO_PB[analysis.stage],
        stages=stage_progress_to_pb(analysis),
        warnings=analysis.warnings,
        results_revision=analysis.results_revision,
    )


# -- facets -------------------------------------------------------------------------------------


def facet_value_from_pb(message: common_pb2.FacetValue) -> FacetValue:
    kind = message.WhichOneof("value")
    return FacetValue(
        facet=message.facet,
        text=message.text if kind == "text" else None,
        number=message.number if kind == "number" else None,
        provider=message.provider,
        reason=message.reason,
        failed=message.failed,
        error=message.error,
    )


def facet_value_to_pb(value: FacetValue) -> common_pb2.FacetValue:
    message = common_pb2.FacetValue(
        facet=value.facet,
        provider=value.provider,
        reason=value.reason,
        failed=value.failed,
        error=value.error,
    )
    if value.number is not None:
        message.number = value.number
    elif value.text is not None:
        message.text = value.text
    return message


def facet_definition_from_pb(message: facets_pb2.FacetDefinition) -> FacetDefinition:
    return FacetDefinition(
        name=message.name,
        type=FACET_TYPE_FROM_PB.get(message.type, FacetType.TEXT),
        min=message.min,
        max=message.max,
        choices=tuple(message.choices),
        builtin=message.builtin,
    )


# -- clusters -----------------------------------------------------------------------------------


def cluster_from_pb(message: common_pb2.Cluster) -> ClusterNode:
    return ClusterNode(
        id=message.id,
        level=message.level,
        parent_id=message.parent_id,
        child_ids=list(message.child_ids),
        name=message.name,
        description=message.description,
        size=message.size,
        distinct_users=message.distinct_users,
        keywords=list(message.keywords),
    )


def cluster_to_pb(node: ClusterNode) -> common_pb2.Cluster:
    return common_pb2.Cluster(
        id=node.id,
        level=node.level,
        parent_id=node.parent_id,
        child_ids=node.child_ids,
        name=node.name,
        description=node.description,
        size=node.size,
        distinct_users=node.distinct_users,
        keywords=node.keywords,
    )


def distribution_to_pb(distribution: FacetDistribution) -> gateway_pb2.FacetDistribution:
    message = gateway_pb2.FacetDistribution(facet=distribution.facet, counts=distribution.counts)
    if distribution.mean is not None:
        message.mean = distribution.mean
    return message


def cluster_result_to_pb(item: ClusterWithFacets) -> gateway_pb2.ClusterResult:
    return gateway_pb2.ClusterResult(
        cluster=cluster_to_pb(item.cluster), facets=[distribution_to_pb(d) for d in item.facets]
    )


def conversation_result_to_pb(item: ConversationResult) -> gateway_pb2.ConversationResult:
    message = gateway_pb2.ConversationResult(
        conversation_id=item.conversation_id,
        facets=[facet_value_to_pb(v) for v in item.facets],
        cluster_id=item.cluster_id,
        withheld=item.withheld,
        revision=item.revision,
        distance=item.distance,
        unassigned=item.unassigned,
    )
    if item.point is not None:
        message.point.CopyFrom(
            common_pb2.MapPoint(conversation_id=item.conversation_id, x=item.point[0], y=item.point[1])
        )
    return message


def results_page_to_pb(page: ResultsPage) -> gateway_pb2.GetAnalysisResultsResponse:
    """One page of GetAnalysisResults (the servicer's answer, and the gateway's HTML report's data)."""
    return gateway_pb2.GetAnalysisResultsResponse(
        analysis=analysis_to_pb(page.analysis),
        clusters=[cluster_result_to_pb(c) for c in page.clusters],
        conversations=[conversation_result_to_pb(c) for c in page.conversations],
        next_page_token=page.next_page_token,
        total_conversations=page.total_conversations,
        withheld_conversations=page.withheld_conversations,
        k=page.k,
        k_rule=page.k_rule,
        revision=page.revision,
        unassigned_conversations=page.unassigned_conversations,
    )


def assign_outcome_to_pb(outcome: AssignOutcome) -> gateway_pb2.AssignConversationsResponse:
    return gateway_pb2.AssignConversationsResponse(
        revision=outcome.revision,
        assignments=[
            gateway_pb2.ConversationAssignment(
                conversation_id=a.conversation_id,
                cluster_id=a.cluster_id,
                distance=a.distance,
                unassigned=a.unassigned,
                withheld=a.withheld,
            )
            for a in outcome.assignments
        ],
        max_distance=outcome.max_distance,
        assigned_count=outcome.assigned_count,
        unassigned_count=outcome.unassigned_count,
        withheld_count=outcome.withheld_count,
        released_count=outcome.released_count,
    )


def clustering_header_to_pb(data: ClusteringInput, dim: int) -> clustering_pb2.StreamClusterEmbeddingsRequest:
    """The first message of a ``StreamClusterEmbeddings`` call."""
    return clustering_pb2.StreamClusterEmbeddingsRequest(
        header=clustering_pb2.StreamClusterEmbeddingsHeader(
            count=data.count,
            dim=dim,
            params=clustering_pb2.ClusteringParams(
                k=data.k,  # None: the clustering service's default, the field left unset
                hierarchy_depth=data.hierarchy_depth,
                min_cluster_size=data.min_cluster_size,
                min_distinct_users=data.min_distinct_users,
                seed=data.seed,
            ),
        )
    )


def clustering_chunk_to_pb(chunk: ClusteringChunk) -> clustering_pb2.StreamClusterEmbeddingsRequest:
    """One of the later messages of a ``StreamClusterEmbeddings`` call."""
    return clustering_pb2.StreamClusterEmbeddingsRequest(
        chunk=clustering_pb2.ClusterEmbeddingsChunk(
            vectors=common_pb2.PackedVectors(
                data=chunk.vectors.data, dim=chunk.vectors.dim, count=chunk.vectors.count
            ),
            ids=chunk.ids,
            user_ids=chunk.user_ids,
            texts=chunk.texts,
        )
    )


def clustering_response_from_pb(message: clustering_pb2.ClusteringResult) -> ClusteringOutput:
    return ClusteringOutput(
        clusters=[cluster_from_pb(c) for c in message.clusters],
        assignments=[(a.conversation_id, a.cluster_id, a.withheld) for a in message.assignments],
        points={p.conversation_id: (p.x, p.y) for p in message.points},
        k=message.k,
        k_rule=message.k_rule,
        base_algorithm=message.base_algorithm,
        map_algorithm=message.map_algorithm,
        withheld_count=message.withheld_count,
    )


# -- performance --------------------------------------------------------------------------------


def window_from_pb(request: gateway_pb2.GetPerformanceReportRequest) -> float | None:
    """The requested window in seconds; None when unset."""
    return request.window.ToTimedelta().total_seconds() if request.HasField("window") else None


def stage_performance_to_pb(stage: StageReport) -> gateway_pb2.StagePerformance:
    return gateway_pb2.StagePerformance(
        stage=STAGE_TO_PB[stage.stage],
        conversation_count=stage.conversations,
        seconds=stage.seconds,
        conversations_per_second=stage.per_second,
        share=stage.share,
        earlier_conversations_per_second=stage.earlier_per_second,
        later_conversations_per_second=stage.later_per_second,
        trend=stage.trend,
    )


def rpc_latency_to_pb(rpc: RpcReport) -> gateway_pb2.RpcLatency:
    return gateway_pb2.RpcLatency(
        method=rpc.method,
        grpc_type=rpc.grpc_type,
        count=rpc.count,
        mean_seconds=rpc.mean_seconds,
        p50_seconds=rpc.p50_seconds,
        p95_seconds=rpc.p95_seconds,
        p99_seconds=rpc.p99_seconds,
    )


def memory_trend_to_pb(memory: MemoryReport) -> gateway_pb2.MemoryTrend:
    return gateway_pb2.MemoryTrend(
        instance=memory.instance,
        sample_count=memory.samples,
        first_sample_time=_timestamp(memory.first_time),
        last_sample_time=_timestamp(memory.last_time),
        first_mb=memory.first_mb,
        last_mb=memory.last_mb,
        peak_mb=memory.peak_mb,
        slope_mb_per_hour=memory.slope_mb_per_hour,
        growing=memory.growing,
        warning=memory.warning,
    )


def performance_report_to_pb(report: PerformanceReport) -> gateway_pb2.GetPerformanceReportResponse:
    return gateway_pb2.GetPerformanceReportResponse(
        window_start_time=_timestamp(report.window_start),
        window_end_time=_timestamp(report.window_end),
        analysis_count=report.analyses,
        conversation_count=report.conversations,
        conversations_per_second=report.per_second,
        stages=[stage_performance_to_pb(s) for s in report.stages],
        bottleneck=STAGE_TO_PB[report.bottleneck] if report.bottleneck else gateway_pb2.STAGE_UNSPECIFIED,
        rpc_latencies=[rpc_latency_to_pb(r) for r in report.rpcs],
        memory_trends=[memory_trend_to_pb(m) for m in report.memory],
        recommendations=report.recommendations,
        sample_count=report.samples,
    )
