"""StreamClusterEmbeddings over real sockets: same answer as the unary call, chunk-by-chunk validation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import grpc
import numpy as np
import pytest

from briefxai.clustering.v1 import clustering_pb2, clustering_pb2_grpc
from briefxai.common.v1 import common_pb2
from tests.clustering.service_helpers import assert_invalid_argument, make_request, service_settings, started
from tests.support.errors import field_violations

if TYPE_CHECKING:
    Stub: TypeAlias = clustering_pb2_grpc.ClusteringServiceAsyncStub

Message: TypeAlias = clustering_pb2.StreamClusterEmbeddingsRequest


def header(request: clustering_pb2.ClusterEmbeddingsRequest) -> Message:
    return Message(
        header=clustering_pb2.StreamClusterEmbeddingsHeader(
            params=request.params, count=request.vectors.count, dim=request.vectors.dim
        )
    )


def chunk(request: clustering_pb2.ClusterEmbeddingsRequest, start: int, end: int) -> Message:
    """Vectors [start, end) of a unary request as one chunk message."""
    row = request.vectors.dim * 4
    return Message(
        chunk=clustering_pb2.ClusterEmbeddingsChunk(
            vectors=common_pb2.PackedVectors(
                data=request.vectors.data[start * row : end * row], dim=request.vectors.dim, count=end - start
            ),
            ids=request.ids[start:end],
            user_ids=request.user_ids[start:end],
            texts=request.texts[start:end],
        )
    )


def as_stream(request: clustering_pb2.ClusterEmbeddingsRequest, size: int) -> list[Message]:
    count = request.vectors.count
    return [header(request)] + [chunk(request, s, min(count, s + size)) for s in range(0, count, size)]


async def send(stub: Stub, messages: list[Message]) -> clustering_pb2.ClusteringResult:
    async def requests() -> AsyncIterator[Message]:
        for message in messages:
            yield message

    return (await stub.StreamClusterEmbeddings(requests())).result


async def test_stream_gives_the_unary_answer_with_unaligned_chunks(stub: Stub) -> None:
    request = make_request(300, centers=5, seed=1)
    request.params.seed = 42
    unary = (await stub.ClusterEmbeddings(request)).result
    streamed = await send(stub, as_stream(request, 37))  # 8 chunks of 37, then one of 4
    assert streamed == unary  # byte for byte: clusters, assignments, map points, k
    assert len(streamed.assignments) == 300 and streamed.points
    one_chunk = await send(stub, as_stream(request, 300))
    assert one_chunk == unary


async def test_stream_without_user_ids_and_texts(stub: Stub) -> None:
    request = make_request(60, centers=2, skip_map=True)
    del request.user_ids[:]
    del request.texts[:]
    assert await send(stub, as_stream(request, 25)) == (await stub.ClusterEmbeddings(request)).result


def base() -> clustering_pb2.ClusterEmbeddingsRequest:
    return make_request(40, centers=2, skip_map=True)


def chunks_of(request: clustering_pb2.ClusterEmbeddingsRequest) -> list[Message]:
    """A header and chunks of 10, 13, 17 vectors."""
    return [header(request), chunk(request, 0, 10), chunk(request, 10, 23), chunk(request, 23, 40)]


def no_header() -> list[Message]:
    return chunks_of(base())[1:]


def two_headers() -> list[Message]:
    messages = chunks_of(base())
    return [*messages[:2], messages[0], *messages[2:]]


def empty_stream() -> list[Message]:
    return []


def empty_message() -> list[Message]:
    messages = chunks_of(base())
    return [*messages[:2], Message(), *messages[2:]]


def chunk_dim_mismatch() -> list[Message]:
    messages = chunks_of(base())
    messages[2].chunk.vectors.dim = 8  # the header says 16
    return messages


def chunk_short_data() -> list[Message]:
    messages = chunks_of(base())
    messages[3].chunk.vectors.data = messages[3].chunk.vectors.data[:-4]
    return messages


def chunk_nan() -> list[Message]:
    messages = chunks_of(base())
    vectors = np.frombuffer(messages[2].chunk.vectors.data, dtype="<f4").reshape(13, 16).copy()
    vectors[4, 2] = np.nan
    messages[2].chunk.vectors.data = vectors.tobytes()
    return messages


def chunk_zero_row() -> list[Message]:
    messages = chunks_of(base())
    vectors = np.frombuffer(messages[3].chunk.vectors.data, dtype="<f4").reshape(17, 16).copy()
    vectors[0] = 0
    messages[3].chunk.vectors.data = vectors.tobytes()
    return messages


def duplicate_id_across_chunks() -> list[Message]:
    messages = chunks_of(base())
    messages[3].chunk.ids[5] = messages[2].chunk.ids[1]
    return messages


def chunk_ids_short() -> list[Message]:
    messages = chunks_of(base())
    del messages[2].chunk.ids[-1]
    del messages[2].chunk.texts[-2:]
    return messages


def user_ids_only_in_some_chunks() -> list[Message]:
    messages = chunks_of(base())
    del messages[3].chunk.user_ids[:]
    return messages


def more_vectors_than_count() -> list[Message]:
    messages = chunks_of(base())
    messages[0].header.count = 30
    return messages


def fewer_vectors_than_count() -> list[Message]:
    messages = chunks_of(base())
    messages[0].header.count = 41
    return messages


def bad_header() -> list[Message]:
    messages = chunks_of(base())
    messages[0].header.dim = 0
    messages[0].header.params.k = 201
    return messages[:1]


def empty_chunk() -> list[Message]:
    messages = chunks_of(base())
    return [*messages[:2], Message(chunk=clustering_pb2.ClusterEmbeddingsChunk()), *messages[2:]]


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (no_header, [("header", "the first message must be the header, got chunks[0]")]),
        (two_headers, [("header", "a second header arrived after chunk 0")]),
        (empty_stream, [("header", "the stream ended without a header")]),
        (empty_message, [("payload", "message 2 of the stream has neither header nor chunk")]),
        (chunk_dim_mismatch, [("chunks[1].vectors.dim", "must equal header.dim = 16, got 8")]),
        (chunk_short_data, [("chunks[2].vectors.data", "holds 1084 bytes, expected")]),
        (chunk_nan, [("chunks[1].vectors.data", "vector 4 holds NaN or infinity")]),
        (chunk_zero_row, [("chunks[2].vectors.data", "vector 0 is all zeros")]),
        (duplicate_id_across_chunks, [("chunks[2].ids[5]", "duplicates chunks[1].ids[1]")]),
        (chunk_ids_short, [("chunks[1].ids", "13 vectors, 12 ids"), ("chunks[1].texts", "got 11")]),
        (user_ids_only_in_some_chunks, [("chunks[2].user_ids", "the earlier chunks had them")]),
        (more_vectors_than_count, [("chunks[2].vectors.count", "would exceed header.count = 30")]),
        (fewer_vectors_than_count, [("header.count", "ended after 40 vectors in 3 chunks")]),
        (bad_header, [("header.dim", "must be at least 1")]),
        (
            empty_chunk,
            [
                ("chunks[1].vectors.dim", "must equal header.dim = 16, got 0"),
                ("chunks[1].vectors.count", "a chunk holds at least 1 vector"),
                ("chunks[1].user_ids", "the earlier chunks had them"),
                ("chunks[1].texts", "the earlier chunks had them"),
            ],
        ),
    ],
)
async def test_bad_streams_are_invalid_argument_naming_the_chunk_and_the_service_keeps_serving(
    stub: Stub, build: Callable[[], list[Message]], expected: list[tuple[str, str]]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await send(stub, build())
    assert_invalid_argument(failure.value, expected)
    reply = await send(stub, chunks_of(base()))
    assert len(reply.assignments) == 40


async def test_header_params_are_checked_with_header_paths(stub: Stub) -> None:
    request = base()
    request.params.k = 201
    request.params.hierarchy_depth = 7
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await send(stub, chunks_of(request))
    assert [field for field, _ in field_violations(failure.value)] == [
        "header.params.k",
        "header.params.hierarchy_depth",
    ]


@pytest.mark.parametrize(("overrides", "field"), [({"max_vectors": 10}, "header.count")])
async def test_count_above_the_limit_is_refused_at_the_header(overrides: dict[str, Any], field: str) -> None:
    service = await started(service_settings(**overrides))
    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            stub = cast("Stub", clustering_pb2_grpc.ClusteringServiceStub(channel))
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await send(stub, chunks_of(base()))
            assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert field_violations(failure.value) == [(field, "at most 10 vectors per request, got 40")]
    finally:
        await service.stop(grace=0)


async def test_vectors_above_the_message_limit_are_refused_at_the_header(stub: Stub) -> None:
    message = header(base())
    message.header.count = 1000
    message.header.dim = 1_000_000  # 4 GB of floats: refused before anything is allocated
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await send(stub, [message])
    assert [field for field, _ in field_violations(failure.value)] == ["header.dim"]
