"""The clustering service over real sockets: started with the bootstrap, called through generated stubs."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from briefxai.clustering.v1 import clustering_pb2, clustering_pb2_grpc
from briefxai_clustering.model import (
    Assignment,
    ClusteringInput,
    ClusteringParams,
    ClusteringResult,
    ClusterNode,
    MapPoint,
)
from briefxai_clustering.servicer import SERVICE_NAME
from briefxai_common.bootstrap import RunningService
from tests.clustering.gated_namer import GatedNamer
from tests.clustering.helpers import assert_consistent
from tests.clustering.service_helpers import assert_invalid_argument, make_request, service_settings, started
from tests.clustering.synthetic import make_data
from tests.support.errors import field_violations
from tests.support.services import assert_serving

if TYPE_CHECKING:
    Stub: TypeAlias = clustering_pb2_grpc.ClusteringServiceAsyncStub


def as_domain(
    request: clustering_pb2.ClusterEmbeddingsRequest, reply: clustering_pb2.ClusteringResult
) -> tuple[ClusteringInput, ClusteringResult]:
    """The reply in domain terms, so that the shared consistency checks apply to what went over the wire."""
    data = ClusteringInput(
        np.zeros((len(request.ids), 1), np.float32), list(request.ids), list(request.user_ids)
    )
    result = ClusteringResult(
        clusters=[
            ClusterNode(
                id=c.id,
                level=c.level,
                parent_id=c.parent_id,
                child_ids=list(c.child_ids),
                name=c.name,
                description=c.description,
                size=c.size,
                distinct_users=c.distinct_users,
                keywords=list(c.keywords),
            )
            for c in reply.clusters
        ],
        assignments=[Assignment(a.conversation_id, a.cluster_id, a.withheld) for a in reply.assignments],
        points=[MapPoint(p.conversation_id, p.x, p.y) for p in reply.points],
        k=reply.k,
        k_rule=reply.k_rule,
        base_algorithm=reply.base_algorithm,
        map_algorithm=reply.map_algorithm,
        withheld_count=reply.withheld_count,
    )
    return data, result


async def test_real_request_returns_a_consistent_named_tree_and_map(stub: Stub) -> None:
    request = make_request(300, centers=5, seed=1)
    request.params.seed = 42
    reply = (await stub.ClusterEmbeddings(request)).result
    data, result = as_domain(request, reply)
    assert_consistent(result, data, ClusteringParams(min_cluster_size=5, min_distinct_users=3))
    assert reply.k == 17 and reply.k_rule.startswith("auto: round(sqrt(n))")
    assert reply.base_algorithm == "kmeans"
    assert reply.map_algorithm == "umap"
    assert len(reply.points) == 300 - reply.withheld_count
    top = [c for c in reply.clusters if not c.parent_id]
    assert 1 <= len(top) <= 10
    assert all(
        c.name and c.description.startswith("Conversations about") and c.keywords for c in reply.clusters
    )
    again = (await stub.ClusterEmbeddings(request)).result
    assert again == reply  # same input and seed: the same answer, byte for byte


async def test_get_limits_reports_the_servers_own_limits(stub: Stub) -> None:
    limits = await stub.GetLimits(clustering_pb2.GetLimitsRequest())
    settings = service_settings()
    assert (limits.max_k, limits.max_hierarchy_depth, limits.max_vectors) == (
        settings.max_k,
        settings.max_hierarchy_depth,
        settings.max_vectors,
    )


async def test_an_explicit_zero_depth_returns_base_clusters_only(stub: Stub) -> None:
    reply = (
        await stub.ClusterEmbeddings(make_request(60, centers=3, skip_map=True, hierarchy_depth=0))
    ).result
    assert reply.clusters and {c.level for c in reply.clusters} == {0}
    assert all(not c.parent_id for c in reply.clusters)


async def test_health_is_serving_with_job_details(running: RunningService) -> None:
    await assert_serving(running.address, SERVICE_NAME)
    document = json.loads(await asyncio.to_thread(http_body, running.http_port, "/health"))
    assert document["service"] == "clustering"
    assert (document["status"], document["active_sessions"]) == ("healthy", 0)
    assert document["jobs_running"] == 0
    assert document["max_vectors"] == 200_000


def http_body(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return cast(bytes, response.read())


def with_vectors(request: clustering_pb2.ClusterEmbeddingsRequest, vectors: np.ndarray) -> None:
    request.vectors.data = np.ascontiguousarray(vectors, dtype="<f4").tobytes()


def nan_request() -> clustering_pb2.ClusterEmbeddingsRequest:
    request = make_request(20)
    vectors = np.frombuffer(request.vectors.data, dtype="<f4").reshape(20, -1).copy()
    vectors[3, 1] = np.nan
    with_vectors(request, vectors)
    return request


def inf_request() -> clustering_pb2.ClusterEmbeddingsRequest:
    request = make_request(20)
    vectors = np.frombuffer(request.vectors.data, dtype="<f4").reshape(20, -1).copy()
    vectors[7, 0] = np.inf
    with_vectors(request, vectors)
    return request


def zero_row_request() -> clustering_pb2.ClusterEmbeddingsRequest:
    request = make_request(20)
    vectors = np.frombuffer(request.vectors.data, dtype="<f4").reshape(20, -1).copy()
    vectors[5] = 0
    with_vectors(request, vectors)
    return request


def dim_mismatch_request() -> clustering_pb2.ClusterEmbeddingsRequest:
    request = make_request(20)
    request.vectors.dim = 15  # the data holds 20 x 16 floats
    return request


def duplicate_ids_request() -> clustering_pb2.ClusterEmbeddingsRequest:
    request = make_request(20)
    request.ids[2] = request.ids[0]
    return request


def count_mismatch_request() -> clustering_pb2.ClusterEmbeddingsRequest:
    request = make_request(20)
    del request.ids[-1]
    del request.user_ids[-2:]
    return request


def dim_zero_request() -> clustering_pb2.ClusterEmbeddingsRequest:
    request = make_request(20)
    request.vectors.dim = 0
    return request


def single_vector_request() -> clustering_pb2.ClusterEmbeddingsRequest:
    request = make_request(20)
    request.vectors.count = 1
    request.vectors.data = request.vectors.data[: 16 * 4]
    del request.ids[1:]
    del request.user_ids[1:]
    del request.texts[1:]
    return request


def big_k_request() -> clustering_pb2.ClusterEmbeddingsRequest:
    return make_request(20, k=201, hierarchy_depth=7)


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (nan_request, [("vectors.data", "vector 3 holds NaN or infinity")]),
        (inf_request, [("vectors.data", "vector 7 holds NaN or infinity")]),
        (zero_row_request, [("vectors.data", "vector 5 is all zeros")]),
        (dim_mismatch_request, [("vectors.data", "holds 1280 bytes, expected")]),
        (duplicate_ids_request, [("ids[2]", "duplicates ids[0]")]),
        (count_mismatch_request, [("ids", "20 vectors, 19 ids"), ("user_ids", "got 18")]),
        (dim_zero_request, [("vectors.dim", "must be at least 1")]),
        (single_vector_request, [("vectors.count", "at least 2 vectors")]),
        (big_k_request, [("params.k", "must be 2..200 (max_k)"), ("params.hierarchy_depth", "at most 6")]),
    ],
)
async def test_bad_requests_are_invalid_argument_and_the_service_keeps_serving(
    stub: Stub, build: Any, expected: list[tuple[str, str]]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.ClusterEmbeddings(build())
    assert_invalid_argument(failure.value, expected)
    reply = (await stub.ClusterEmbeddings(make_request(40, centers=2, skip_map=True))).result
    assert len(reply.assignments) == 40


async def test_too_many_vectors_is_invalid_argument() -> None:
    service = await started(service_settings(max_vectors=10))
    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            stub = cast("Stub", clustering_pb2_grpc.ClusteringServiceStub(channel))
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await stub.ClusterEmbeddings(make_request(11))
            assert field_violations(failure.value)[0][0] == "vectors.count"
    finally:
        await service.stop(grace=0)


async def test_health_answers_during_a_job_and_a_full_queue_is_resource_exhausted() -> None:
    namer = GatedNamer()
    service = await started(service_settings(max_concurrent_jobs=1, max_queued_jobs=0), namer)
    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            stub = cast("Stub", clustering_pb2_grpc.ClusteringServiceStub(channel))

            async def first_job() -> clustering_pb2.ClusteringResult:
                return (await stub.ClusterEmbeddings(make_request(60, skip_map=True))).result

            job = asyncio.create_task(first_job())
            assert await asyncio.to_thread(namer.entered.wait, 30)
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            document = json.loads(await asyncio.to_thread(http_body, service.http_port, "/health"))
            assert document["jobs_running"] == 1
            # Every slot taken and no queue: a new job would be refused, so the service is degraded.
            assert (document["status"], document["reasons"]) == ("degraded", ["job queue full"])
            with pytest.raises(grpc.aio.AioRpcError) as busy:
                await stub.ClusterEmbeddings(make_request(60, skip_map=True))
            assert busy.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert not job.done()
            namer.gate.set()
            assert len((await job).assignments) == 60
    finally:
        namer.gate.set()
        await service.stop(grace=0)


async def test_warm_up_runs_before_serving() -> None:
    service = await started(service_settings(warm_up_map=True))
    try:
        document = json.loads(await asyncio.to_thread(http_body, service.http_port, "/health"))
        assert (document["status"], document["grpc_status"]) == ("healthy", "SERVING")
        assert document["map_warm"] is True
    finally:
        await service.stop(grace=0)


async def test_withheld_conversations_over_the_wire() -> None:
    service = await started(service_settings(merge_small_clusters=False))
    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            stub = cast("Stub", clustering_pb2_grpc.ClusteringServiceStub(channel))
            request = make_request(80, centers=2, seed=4, k=2, skip_map=False)
            data = make_data(80, centers=2, dim=16, seed=4)
            solo = {data.ids[i] for i in np.flatnonzero(data.labels == 0)}
            for i, conversation_id in enumerate(request.ids):
                if conversation_id in solo:
                    request.user_ids[i] = "one-person"
                    request.texts[i] = f"zyzzyva private detail {i}"
            reply = (await stub.ClusterEmbeddings(request)).result
            withheld = {a.conversation_id for a in reply.assignments if a.withheld}
            assert withheld == solo
            assert reply.withheld_count == len(solo)
            assert all(a.cluster_id == "" for a in reply.assignments if a.withheld)
            assert not withheld & {p.conversation_id for p in reply.points}
            assert len(reply.points) == 80 - len(solo)
            assert "zyzzyva" not in str(reply.clusters)
    finally:
        await service.stop(grace=0)
