"""Plain data that goes into and comes out of the clustering pipeline (no protobuf, no gRPC)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ClusteringParams:
    """Request parameters after server defaults were applied (no zero means "default" any more)."""

    k: int = 0  # 0 = automatic, see choose_k.py
    hierarchy_depth: int = 2
    max_top_clusters: int = 10
    min_cluster_size: int = 5
    min_distinct_users: int = 3
    seed: int = 0
    skip_map: bool = False
    merge_small_clusters: bool = True


@dataclass(frozen=True)
class ClusteringInput:
    """One request: ``vectors[i]`` belongs to conversation ``ids[i]`` of user ``user_ids[i]``.

    ``user_ids`` and ``texts`` are either empty (absent) or as long as ``ids``.
    """

    vectors: FloatArray
    ids: Sequence[str]
    user_ids: Sequence[str] = ()
    texts: Sequence[str] = ()


@dataclass
class ClusterNode:
    """One node of the hierarchy; level 0 holds the base (k-means) clusters."""

    id: str
    level: int
    parent_id: str = ""
    child_ids: list[str] = field(default_factory=list)
    name: str = ""
    description: str = ""
    size: int = 0
    distinct_users: int = 0
    keywords: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Assignment:
    conversation_id: str
    cluster_id: str  # base cluster id; "" when withheld
    withheld: bool


@dataclass(frozen=True)
class MapPoint:
    conversation_id: str
    x: float
    y: float


@dataclass
class ClusteringResult:
    clusters: list[ClusterNode]  # every level, base level first
    assignments: list[Assignment]  # one per input vector, in input order
    points: list[MapPoint]  # one per reported conversation, in input order
    k: int
    k_rule: str
    base_algorithm: str
    map_algorithm: str
    withheld_count: int
    timings: dict[str, float] = field(default_factory=dict)  # wall seconds per stage
    # CPU seconds per stage of the calling thread (all of it with compute_threads 1; not BLAS/OpenMP
    # helper threads otherwise): steadier than wall time on a shared machine.
    cpu_timings: dict[str, float] = field(default_factory=dict)
