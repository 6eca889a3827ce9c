from briefxai.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClusteringParams(_message.Message):
    __slots__ = ("k", "hierarchy_depth", "max_top_clusters", "min_cluster_size", "min_distinct_users", "seed", "skip_map")
    K_FIELD_NUMBER: _ClassVar[int]
    HIERARCHY_DEPTH_FIELD_NUMBER: _ClassVar[int]
    MAX_TOP_CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    MIN_CLUSTER_SIZE_FIELD_NUMBER: _ClassVar[int]
    MIN_DISTINCT_USERS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SKIP_MAP_FIELD_NUMBER: _ClassVar[int]
    k: int
    hierarchy_depth: int
    max_top_clusters: int
    min_cluster_size: int
    min_distinct_users: int
    seed: int
    skip_map: bool
    def __init__(self, k: _Optional[int] = ..., hierarchy_depth: _Optional[int] = ..., max_top_clusters: _Optional[int] = ..., min_cluster_size: _Optional[int] = ..., min_distinct_users: _Optional[int] = ..., seed: _Optional[int] = ..., skip_map: _Optional[bool] = ...) -> None: ...

class ClusterEmbeddingsRequest(_message.Message):
    __slots__ = ("vectors", "ids", "user_ids", "texts", "params")
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    vectors: _common_pb2.PackedVectors
    ids: _containers.RepeatedScalarFieldContainer[str]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    texts: _containers.RepeatedScalarFieldContainer[str]
    params: ClusteringParams
    def __init__(self, vectors: _Optional[_Union[_common_pb2.PackedVectors, _Mapping]] = ..., ids: _Optional[_Iterable[str]] = ..., user_ids: _Optional[_Iterable[str]] = ..., texts: _Optional[_Iterable[str]] = ..., params: _Optional[_Union[ClusteringParams, _Mapping]] = ...) -> None: ...

class StreamClusterEmbeddingsRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: StreamClusterEmbeddingsHeader
    chunk: ClusterEmbeddingsChunk
    def __init__(self, header: _Optional[_Union[StreamClusterEmbeddingsHeader, _Mapping]] = ..., chunk: _Optional[_Union[ClusterEmbeddingsChunk, _Mapping]] = ...) -> None: ...

class StreamClusterEmbeddingsHeader(_message.Message):
    __slots__ = ("params", "count", "dim")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    params: ClusteringParams
    count: int
    dim: int
    def __init__(self, params: _Optional[_Union[ClusteringParams, _Mapping]] = ..., count: _Optional[int] = ..., dim: _Optional[int] = ...) -> None: ...

class ClusterEmbeddingsChunk(_message.Message):
    __slots__ = ("vectors", "ids", "user_ids", "texts")
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    vectors: _common_pb2.PackedVectors
    ids: _containers.RepeatedScalarFieldContainer[str]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    texts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, vectors: _Optional[_Union[_common_pb2.PackedVectors, _Mapping]] = ..., ids: _Optional[_Iterable[str]] = ..., user_ids: _Optional[_Iterable[str]] = ..., texts: _Optional[_Iterable[str]] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("conversation_id", "cluster_id", "withheld")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    WITHHELD_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    cluster_id: str
    withheld: bool
    def __init__(self, conversation_id: _Optional[str] = ..., cluster_id: _Optional[str] = ..., withheld: _Optional[bool] = ...) -> None: ...

class ClusterEmbeddingsResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: ClusteringResult
    def __init__(self, result: _Optional[_Union[ClusteringResult, _Mapping]] = ...) -> None: ...

class StreamClusterEmbeddingsResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: ClusteringResult
    def __init__(self, result: _Optional[_Union[ClusteringResult, _Mapping]] = ...) -> None: ...

class ClusteringResult(_message.Message):
    __slots__ = ("clusters", "assignments", "points", "k", "k_rule", "base_algorithm", "map_algorithm", "withheld_count")
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    K_RULE_FIELD_NUMBER: _ClassVar[int]
    BASE_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    MAP_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    WITHHELD_COUNT_FIELD_NUMBER: _ClassVar[int]
    clusters: _containers.RepeatedCompositeFieldContainer[_common_pb2.Cluster]
    assignments: _containers.RepeatedCompositeFieldContainer[Assignment]
    points: _containers.RepeatedCompositeFieldContainer[_common_pb2.MapPoint]
    k: int
    k_rule: str
    base_algorithm: str
    map_algorithm: str
    withheld_count: int
    def __init__(self, clusters: _Optional[_Iterable[_Union[_common_pb2.Cluster, _Mapping]]] = ..., assignments: _Optional[_Iterable[_Union[Assignment, _Mapping]]] = ..., points: _Optional[_Iterable[_Union[_common_pb2.MapPoint, _Mapping]]] = ..., k: _Optional[int] = ..., k_rule: _Optional[str] = ..., base_algorithm: _Optional[str] = ..., map_algorithm: _Optional[str] = ..., withheld_count: _Optional[int] = ...) -> None: ...

class GetLimitsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetLimitsResponse(_message.Message):
    __slots__ = ("max_k", "max_hierarchy_depth", "max_vectors")
    MAX_K_FIELD_NUMBER: _ClassVar[int]
    MAX_HIERARCHY_DEPTH_FIELD_NUMBER: _ClassVar[int]
    MAX_VECTORS_FIELD_NUMBER: _ClassVar[int]
    max_k: int
    max_hierarchy_depth: int
    max_vectors: int
    def __init__(self, max_k: _Optional[int] = ..., max_hierarchy_depth: _Optional[int] = ..., max_vectors: _Optional[int] = ...) -> None: ...
