import datetime

from briefxai.common.v1 import common_pb2 as _common_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AnalysisState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ANALYSIS_STATE_UNSPECIFIED: _ClassVar[AnalysisState]
    ANALYSIS_STATE_PENDING: _ClassVar[AnalysisState]
    ANALYSIS_STATE_RUNNING: _ClassVar[AnalysisState]
    ANALYSIS_STATE_SUCCEEDED: _ClassVar[AnalysisState]
    ANALYSIS_STATE_FAILED: _ClassVar[AnalysisState]
    ANALYSIS_STATE_CANCELLED: _ClassVar[AnalysisState]

class Stage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAGE_UNSPECIFIED: _ClassVar[Stage]
    STAGE_VALIDATE: _ClassVar[Stage]
    STAGE_FACETS: _ClassVar[Stage]
    STAGE_EMBED: _ClassVar[Stage]
    STAGE_CLUSTER: _ClassVar[Stage]
    STAGE_STORE: _ClassVar[Stage]

class EmbedText(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EMBED_TEXT_UNSPECIFIED: _ClassVar[EmbedText]
    EMBED_TEXT_CONVERSATION: _ClassVar[EmbedText]
    EMBED_TEXT_USER_MESSAGES: _ClassVar[EmbedText]
    EMBED_TEXT_FIRST_USER_MESSAGE: _ClassVar[EmbedText]
    EMBED_TEXT_REQUEST_SUMMARY: _ClassVar[EmbedText]
ANALYSIS_STATE_UNSPECIFIED: AnalysisState
ANALYSIS_STATE_PENDING: AnalysisState
ANALYSIS_STATE_RUNNING: AnalysisState
ANALYSIS_STATE_SUCCEEDED: AnalysisState
ANALYSIS_STATE_FAILED: AnalysisState
ANALYSIS_STATE_CANCELLED: AnalysisState
STAGE_UNSPECIFIED: Stage
STAGE_VALIDATE: Stage
STAGE_FACETS: Stage
STAGE_EMBED: Stage
STAGE_CLUSTER: Stage
STAGE_STORE: Stage
EMBED_TEXT_UNSPECIFIED: EmbedText
EMBED_TEXT_CONVERSATION: EmbedText
EMBED_TEXT_USER_MESSAGES: EmbedText
EMBED_TEXT_FIRST_USER_MESSAGE: EmbedText
EMBED_TEXT_REQUEST_SUMMARY: EmbedText

class AnalysisOptions(_message.Message):
    __slots__ = ("facets", "k", "hierarchy_depth", "min_cluster_size", "min_distinct_users", "seed", "embed_text", "display_name", "embed_token_budget")
    FACETS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    HIERARCHY_DEPTH_FIELD_NUMBER: _ClassVar[int]
    MIN_CLUSTER_SIZE_FIELD_NUMBER: _ClassVar[int]
    MIN_DISTINCT_USERS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    EMBED_TEXT_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    EMBED_TOKEN_BUDGET_FIELD_NUMBER: _ClassVar[int]
    facets: _containers.RepeatedScalarFieldContainer[str]
    k: int
    hierarchy_depth: int
    min_cluster_size: int
    min_distinct_users: int
    seed: int
    embed_text: EmbedText
    display_name: str
    embed_token_budget: int
    def __init__(self, facets: _Optional[_Iterable[str]] = ..., k: _Optional[int] = ..., hierarchy_depth: _Optional[int] = ..., min_cluster_size: _Optional[int] = ..., min_distinct_users: _Optional[int] = ..., seed: _Optional[int] = ..., embed_text: _Optional[_Union[EmbedText, str]] = ..., display_name: _Optional[str] = ..., embed_token_budget: _Optional[int] = ...) -> None: ...

class StageProgress(_message.Message):
    __slots__ = ("stage", "done", "total")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    stage: Stage
    done: int
    total: int
    def __init__(self, stage: _Optional[_Union[Stage, str]] = ..., done: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class Analysis(_message.Message):
    __slots__ = ("id", "state", "options", "request_id", "conversation_count", "create_time", "update_time", "stage", "stages", "warnings", "error", "results_revision")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RESULTS_REVISION_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: AnalysisState
    options: AnalysisOptions
    request_id: str
    conversation_count: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    stage: Stage
    stages: _containers.RepeatedCompositeFieldContainer[StageProgress]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    error: _status_pb2.Status
    results_revision: int
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[AnalysisState, str]] = ..., options: _Optional[_Union[AnalysisOptions, _Mapping]] = ..., request_id: _Optional[str] = ..., conversation_count: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stage: _Optional[_Union[Stage, str]] = ..., stages: _Optional[_Iterable[_Union[StageProgress, _Mapping]]] = ..., warnings: _Optional[_Iterable[str]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., results_revision: _Optional[int] = ...) -> None: ...

class CreateAnalysisRequest(_message.Message):
    __slots__ = ("conversations", "options", "request_id")
    CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    conversations: _containers.RepeatedCompositeFieldContainer[_common_pb2.Conversation]
    options: AnalysisOptions
    request_id: str
    def __init__(self, conversations: _Optional[_Iterable[_Union[_common_pb2.Conversation, _Mapping]]] = ..., options: _Optional[_Union[AnalysisOptions, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateAnalysisResponse(_message.Message):
    __slots__ = ("analysis",)
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    analysis: Analysis
    def __init__(self, analysis: _Optional[_Union[Analysis, _Mapping]] = ...) -> None: ...

class UploadAnalysisRequest(_message.Message):
    __slots__ = ("header", "batch")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    batch: ConversationBatch
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., batch: _Optional[_Union[ConversationBatch, _Mapping]] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("options", "request_id")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    options: AnalysisOptions
    request_id: str
    def __init__(self, options: _Optional[_Union[AnalysisOptions, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ConversationBatch(_message.Message):
    __slots__ = ("conversations",)
    CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    conversations: _containers.RepeatedCompositeFieldContainer[_common_pb2.Conversation]
    def __init__(self, conversations: _Optional[_Iterable[_Union[_common_pb2.Conversation, _Mapping]]] = ...) -> None: ...

class UploadAnalysisResponse(_message.Message):
    __slots__ = ("analysis",)
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    analysis: Analysis
    def __init__(self, analysis: _Optional[_Union[Analysis, _Mapping]] = ...) -> None: ...

class GetAnalysisRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetAnalysisResponse(_message.Message):
    __slots__ = ("analysis",)
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    analysis: Analysis
    def __init__(self, analysis: _Optional[_Union[Analysis, _Mapping]] = ...) -> None: ...

class ListAnalysesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAnalysesResponse(_message.Message):
    __slots__ = ("analyses", "next_page_token")
    ANALYSES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    analyses: _containers.RepeatedCompositeFieldContainer[Analysis]
    next_page_token: str
    def __init__(self, analyses: _Optional[_Iterable[_Union[Analysis, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchAnalysisRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WatchAnalysisResponse(_message.Message):
    __slots__ = ("analysis", "rate", "eta_seconds")
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    analysis: Analysis
    rate: float
    eta_seconds: float
    def __init__(self, analysis: _Optional[_Union[Analysis, _Mapping]] = ..., rate: _Optional[float] = ..., eta_seconds: _Optional[float] = ...) -> None: ...

class CancelAnalysisRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelAnalysisResponse(_message.Message):
    __slots__ = ("analysis",)
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    analysis: Analysis
    def __init__(self, analysis: _Optional[_Union[Analysis, _Mapping]] = ...) -> None: ...

class DeleteAnalysisRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteAnalysisResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FacetDistribution(_message.Message):
    __slots__ = ("facet", "counts", "mean")
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    FACET_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    facet: str
    counts: _containers.ScalarMap[str, int]
    mean: float
    def __init__(self, facet: _Optional[str] = ..., counts: _Optional[_Mapping[str, int]] = ..., mean: _Optional[float] = ...) -> None: ...

class ClusterResult(_message.Message):
    __slots__ = ("cluster", "facets")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    FACETS_FIELD_NUMBER: _ClassVar[int]
    cluster: _common_pb2.Cluster
    facets: _containers.RepeatedCompositeFieldContainer[FacetDistribution]
    def __init__(self, cluster: _Optional[_Union[_common_pb2.Cluster, _Mapping]] = ..., facets: _Optional[_Iterable[_Union[FacetDistribution, _Mapping]]] = ...) -> None: ...

class ConversationResult(_message.Message):
    __slots__ = ("conversation_id", "facets", "cluster_id", "withheld", "point", "revision", "distance", "unassigned")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    FACETS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    WITHHELD_FIELD_NUMBER: _ClassVar[int]
    POINT_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    UNASSIGNED_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    facets: _containers.RepeatedCompositeFieldContainer[_common_pb2.FacetValue]
    cluster_id: str
    withheld: bool
    point: _common_pb2.MapPoint
    revision: int
    distance: float
    unassigned: bool
    def __init__(self, conversation_id: _Optional[str] = ..., facets: _Optional[_Iterable[_Union[_common_pb2.FacetValue, _Mapping]]] = ..., cluster_id: _Optional[str] = ..., withheld: _Optional[bool] = ..., point: _Optional[_Union[_common_pb2.MapPoint, _Mapping]] = ..., revision: _Optional[int] = ..., distance: _Optional[float] = ..., unassigned: _Optional[bool] = ...) -> None: ...

class GetAnalysisResultsRequest(_message.Message):
    __slots__ = ("id", "page_size", "page_token", "revision")
    ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    id: str
    page_size: int
    page_token: str
    revision: int
    def __init__(self, id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class GetAnalysisResultsResponse(_message.Message):
    __slots__ = ("analysis", "clusters", "conversations", "next_page_token", "total_conversations", "withheld_conversations", "k", "k_rule", "revision", "unassigned_conversations")
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    WITHHELD_CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    K_RULE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    UNASSIGNED_CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    analysis: Analysis
    clusters: _containers.RepeatedCompositeFieldContainer[ClusterResult]
    conversations: _containers.RepeatedCompositeFieldContainer[ConversationResult]
    next_page_token: str
    total_conversations: int
    withheld_conversations: int
    k: int
    k_rule: str
    revision: int
    unassigned_conversations: int
    def __init__(self, analysis: _Optional[_Union[Analysis, _Mapping]] = ..., clusters: _Optional[_Iterable[_Union[ClusterResult, _Mapping]]] = ..., conversations: _Optional[_Iterable[_Union[ConversationResult, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_conversations: _Optional[int] = ..., withheld_conversations: _Optional[int] = ..., k: _Optional[int] = ..., k_rule: _Optional[str] = ..., revision: _Optional[int] = ..., unassigned_conversations: _Optional[int] = ...) -> None: ...

class AssignConversationsRequest(_message.Message):
    __slots__ = ("id", "conversations", "request_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    conversations: _containers.RepeatedCompositeFieldContainer[_common_pb2.Conversation]
    request_id: str
    def __init__(self, id: _Optional[str] = ..., conversations: _Optional[_Iterable[_Union[_common_pb2.Conversation, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class AssignConversationsResponse(_message.Message):
    __slots__ = ("revision", "assignments", "max_distance", "assigned_count", "unassigned_count", "withheld_count", "released_count")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    MAX_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_COUNT_FIELD_NUMBER: _ClassVar[int]
    UNASSIGNED_COUNT_FIELD_NUMBER: _ClassVar[int]
    WITHHELD_COUNT_FIELD_NUMBER: _ClassVar[int]
    RELEASED_COUNT_FIELD_NUMBER: _ClassVar[int]
    revision: int
    assignments: _containers.RepeatedCompositeFieldContainer[ConversationAssignment]
    max_distance: float
    assigned_count: int
    unassigned_count: int
    withheld_count: int
    released_count: int
    def __init__(self, revision: _Optional[int] = ..., assignments: _Optional[_Iterable[_Union[ConversationAssignment, _Mapping]]] = ..., max_distance: _Optional[float] = ..., assigned_count: _Optional[int] = ..., unassigned_count: _Optional[int] = ..., withheld_count: _Optional[int] = ..., released_count: _Optional[int] = ...) -> None: ...

class ConversationAssignment(_message.Message):
    __slots__ = ("conversation_id", "cluster_id", "distance", "unassigned", "withheld")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    UNASSIGNED_FIELD_NUMBER: _ClassVar[int]
    WITHHELD_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    cluster_id: str
    distance: float
    unassigned: bool
    withheld: bool
    def __init__(self, conversation_id: _Optional[str] = ..., cluster_id: _Optional[str] = ..., distance: _Optional[float] = ..., unassigned: _Optional[bool] = ..., withheld: _Optional[bool] = ...) -> None: ...

class GetPerformanceReportRequest(_message.Message):
    __slots__ = ("window",)
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    window: _duration_pb2.Duration
    def __init__(self, window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetPerformanceReportResponse(_message.Message):
    __slots__ = ("window_start_time", "window_end_time", "analysis_count", "conversation_count", "conversations_per_second", "stages", "bottleneck", "rpc_latencies", "memory_trends", "recommendations", "sample_count")
    WINDOW_START_TIME_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_TIME_FIELD_NUMBER: _ClassVar[int]
    ANALYSIS_COUNT_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_COUNT_FIELD_NUMBER: _ClassVar[int]
    CONVERSATIONS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    BOTTLENECK_FIELD_NUMBER: _ClassVar[int]
    RPC_LATENCIES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TRENDS_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATIONS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    window_start_time: _timestamp_pb2.Timestamp
    window_end_time: _timestamp_pb2.Timestamp
    analysis_count: int
    conversation_count: int
    conversations_per_second: float
    stages: _containers.RepeatedCompositeFieldContainer[StagePerformance]
    bottleneck: Stage
    rpc_latencies: _containers.RepeatedCompositeFieldContainer[RpcLatency]
    memory_trends: _containers.RepeatedCompositeFieldContainer[MemoryTrend]
    recommendations: _containers.RepeatedScalarFieldContainer[str]
    sample_count: int
    def __init__(self, window_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., analysis_count: _Optional[int] = ..., conversation_count: _Optional[int] = ..., conversations_per_second: _Optional[float] = ..., stages: _Optional[_Iterable[_Union[StagePerformance, _Mapping]]] = ..., bottleneck: _Optional[_Union[Stage, str]] = ..., rpc_latencies: _Optional[_Iterable[_Union[RpcLatency, _Mapping]]] = ..., memory_trends: _Optional[_Iterable[_Union[MemoryTrend, _Mapping]]] = ..., recommendations: _Optional[_Iterable[str]] = ..., sample_count: _Optional[int] = ...) -> None: ...

class StagePerformance(_message.Message):
    __slots__ = ("stage", "conversation_count", "seconds", "conversations_per_second", "share", "earlier_conversations_per_second", "later_conversations_per_second", "trend")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_COUNT_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    CONVERSATIONS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    EARLIER_CONVERSATIONS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    LATER_CONVERSATIONS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    TREND_FIELD_NUMBER: _ClassVar[int]
    stage: Stage
    conversation_count: int
    seconds: float
    conversations_per_second: float
    share: float
    earlier_conversations_per_second: float
    later_conversations_per_second: float
    trend: float
    def __init__(self, stage: _Optional[_Union[Stage, str]] = ..., conversation_count: _Optional[int] = ..., seconds: _Optional[float] = ..., conversations_per_second: _Optional[float] = ..., share: _Optional[float] = ..., earlier_conversations_per_second: _Optional[float] = ..., later_conversations_per_second: _Optional[float] = ..., trend: _Optional[float] = ...) -> None: ...

class RpcLatency(_message.Message):
    __slots__ = ("method", "grpc_type", "count", "mean_seconds", "p50_seconds", "p95_seconds", "p99_seconds")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    GRPC_TYPE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MEAN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    P50_SECONDS_FIELD_NUMBER: _ClassVar[int]
    P95_SECONDS_FIELD_NUMBER: _ClassVar[int]
    P99_SECONDS_FIELD_NUMBER: _ClassVar[int]
    method: str
    grpc_type: str
    count: int
    mean_seconds: float
    p50_seconds: float
    p95_seconds: float
    p99_seconds: float
    def __init__(self, method: _Optional[str] = ..., grpc_type: _Optional[str] = ..., count: _Optional[int] = ..., mean_seconds: _Optional[float] = ..., p50_seconds: _Optional[float] = ..., p95_seconds: _Optional[float] = ..., p99_seconds: _Optional[float] = ...) -> None: ...

class MemoryTrend(_message.Message):
    __slots__ = ("instance", "sample_count", "first_sample_time", "last_sample_time", "first_mb", "last_mb", "peak_mb", "slope_mb_per_hour", "growing", "warning")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_SAMPLE_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_SAMPLE_TIME_FIELD_NUMBER: _ClassVar[int]
    FIRST_MB_FIELD_NUMBER: _ClassVar[int]
    LAST_MB_FIELD_NUMBER: _ClassVar[int]
    PEAK_MB_FIELD_NUMBER: _ClassVar[int]
    SLOPE_MB_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    GROWING_FIELD_NUMBER: _ClassVar[int]
    WARNING_FIELD_NUMBER: _ClassVar[int]
    instance: str
    sample_count: int
    first_sample_time: _timestamp_pb2.Timestamp
    last_sample_time: _timestamp_pb2.Timestamp
    first_mb: float
    last_mb: float
    peak_mb: float
    slope_mb_per_hour: float
    growing: bool
    warning: str
    def __init__(self, instance: _Optional[str] = ..., sample_count: _Optional[int] = ..., first_sample_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_sample_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., first_mb: _Optional[float] = ..., last_mb: _Optional[float] = ..., peak_mb: _Optional[float] = ..., slope_mb_per_hour: _Optional[float] = ..., growing: _Optional[bool] = ..., warning: _Optional[str] = ...) -> None: ...
