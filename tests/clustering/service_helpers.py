"""Setup shared by the clustering service tests (unary and streaming): settings, requests, errors."""

from __future__ import annotations

from typing import Any

import grpc

from briefxai.clustering.v1 import clustering_pb2
from briefxai.common.v1 import common_pb2
from briefxai_clustering.naming import Namer
from briefxai_clustering.server import build_service
from briefxai_clustering.settings import ClusteringSettings
from briefxai_common.bootstrap import RunningService, start_service
from briefxai_common.vectors import pack_vectors
from tests.clustering.synthetic import make_data
from tests.support.errors import field_violations
from tests.support.services import local_settings


def service_settings(**overrides: Any) -> ClusteringSettings:
    return local_settings(ClusteringSettings, **{"warm_up_map": False, "compute_threads": 1, **overrides})


async def started(settings: ClusteringSettings, namer: Namer | None = None) -> RunningService:
    return await start_service(build_service(settings, namer))


def make_request(
    n: int = 300, centers: int = 5, dim: int = 16, seed: int = 0, **params: Any
) -> clustering_pb2.ClusterEmbeddingsRequest:
    data = make_data(n, centers=centers, dim=dim, seed=seed)
    raw, packed_dim, count = pack_vectors(data.vectors)
    return clustering_pb2.ClusterEmbeddingsRequest(
        vectors=common_pb2.PackedVectors(data=raw, dim=packed_dim, count=count),
        ids=data.ids,
        user_ids=data.user_ids,
        texts=data.texts,
        params=clustering_pb2.ClusteringParams(**params),
    )


def assert_invalid_argument(error: grpc.aio.AioRpcError, expected: list[tuple[str, str]]) -> None:
    """INVALID_ARGUMENT naming exactly ``expected``'s fields, in order, each description holding its
    fragment."""
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = field_violations(error)
    assert [field for field, _ in found] == [field for field, _ in expected]
    for (_, description), (_, fragment) in zip(found, expected, strict=True):
        assert fragment in description
