"""Same texts, same vectors, same clusters: whatever the batching, the timing or a restart.

Through the real gRPC embedding service on 127.0.0.1 with the default ONNX model (int8, static
activation scales) and the cache off, so every path below is computed by the model: each text alone,
all in one call, in shuffled calls of several sizes, streamed, in concurrent calls that the micro-batcher
merges as they happen to arrive, and on a second, freshly started service with other batch settings.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import pytest
from prometheus_client import REGISTRY
from sklearn.cluster import KMeans

from briefxai.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from briefxai_common.bootstrap import RunningService, start_service
from briefxai_common.vectors import unpack_vectors
from briefxai_embedding.server import build_service
from briefxai_embedding.settings import EmbeddingSettings
from briefxai_sampledata import iter_conversations
from tests.embedding.sentences import TOPICS, VARIED
from tests.support.services import local_settings

SAME = 0.99999  # the least cosine between two vectors of one text that count as the same
Vectors = npt.NDArray[np.float32]


def corpus() -> list[str]:
    """About 190 texts: hand-written topics and oddities, and sample conversations of varied length."""
    conversations = [
        "\n".join(message["content"] for message in conversation["messages"][: 1 + index % 4])
        for index, conversation in enumerate(iter_conversations(40, seed=11))
    ]
    topics = [text for sentences in TOPICS.values() for text in sentences]
    return list(dict.fromkeys([*topics, *VARIED, *conversations]))


async def start(**overrides: Any) -> RunningService:
    """A service that loads its own default ONNX backend, as a fresh process would."""
    settings = local_settings(EmbeddingSettings, **{"cache_max_mb": 0, "batch_wait_ms": 5.0, **overrides})
    return await start_service(build_service(settings))


@pytest.fixture
async def service() -> AsyncIterator[RunningService]:
    running = await start()
    yield running
    await running.stop(grace=0)


async def embed(stub: Any, texts: Sequence[str]) -> Vectors:
    reply = await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=list(texts)))
    return unpack_vectors(reply.vectors.data, reply.vectors.dim, reply.vectors.count)


async def in_calls(stub: Any, texts: list[str], size: int, seed: int) -> Vectors:
    """``texts`` shuffled, sent ``size`` at a time one call after the other, put back in order."""
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    vectors = np.empty((len(texts), 384), dtype=np.float32)
    for start_at in range(0, len(order), size):
        rows = order[start_at : start_at + size]
        vectors[rows] = await embed(stub, [texts[i] for i in rows])
    return vectors


async def concurrently(stub: Any, texts: list[str], seed: int) -> Vectors:
    """``texts`` shuffled and cut into calls of 1 to 9 texts, all sent at once."""
    rng = random.Random(seed)
    order = list(range(len(texts)))
    rng.shuffle(order)
    calls: list[list[int]] = []
    while len(calls) == 0 or sum(map(len, calls)) < len(order):
        done = sum(map(len, calls))
        calls.append(order[done : done + rng.randint(1, 9)])
    replies = await asyncio.gather(*(embed(stub, [texts[i] for i in rows]) for rows in calls))
    vectors = np.empty((len(texts), 384), dtype=np.float32)
    for rows, reply in zip(calls, replies, strict=True):
        vectors[rows] = reply
    return vectors


async def streamed(stub: Any, texts: list[str], size: int) -> Vectors:
    async def chunks() -> AsyncIterator[embedding_pb2.StreamEmbedTextsRequest]:
        for start_at in range(0, len(texts), size):
            yield embedding_pb2.StreamEmbedTextsRequest(texts=texts[start_at : start_at + size])

    replies = [reply async for reply in stub.StreamEmbedTexts(chunks())]
    return np.concatenate([unpack_vectors(r.vectors.data, r.vectors.dim, r.vectors.count) for r in replies])


def merged_requests() -> float:
    """Requests answered by the ONNX backend so far, and the backend calls that answered them."""
    labels = {"backend": "onnx"}
    requests = REGISTRY.get_sample_value("briefxai_embedding_backend_batch_requests_sum", labels) or 0.0
    calls = REGISTRY.get_sample_value("briefxai_embedding_backend_batch_requests_count", labels) or 0.0
    return requests - calls


def assert_same(got: Vectors, expected: Vectors, how: str) -> None:
    cosine = np.sum(got.astype(np.float64) * expected.astype(np.float64), axis=1)
    assert cosine.min() >= SAME, f"{how}: row {cosine.argmin()} moved to cosine {cosine.min():.7f}"


async def test_same_texts_same_vectors_and_clusters_whatever_the_batching(
    service: RunningService,
) -> None:
    texts = corpus()
    assert len(texts) >= 180
    async with grpc.aio.insecure_channel(service.address) as channel:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        alone = np.vstack([await embed(stub, [text]) for text in texts])
        ways: dict[str, Vectors] = {"one call": await embed(stub, texts)}
        for size, seed in ((7, 1), (16, 2)):
            ways[f"calls of {size}"] = await in_calls(stub, texts, size, seed)
        ways["streamed in chunks of 10"] = await streamed(stub, texts, 10)
        merged_before = merged_requests()
        for seed in (4, 5):
            ways[f"concurrent calls (seed {seed})"] = await concurrently(stub, texts, seed)
        assert merged_requests() > merged_before  # the micro-batcher did merge concurrent calls
    restarted = await start(batch_size=5, batch_tokens=256, onnx_parallel_runs=1, batch_wait_ms=0.0)
    try:
        async with grpc.aio.insecure_channel(restarted.address) as channel:
            stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
            ways["restarted, other batch settings"] = (await embed(stub, texts[::-1]))[::-1]
    finally:
        await restarted.stop(grace=0)

    for how, vectors in ways.items():
        assert_same(vectors, alone, how)
    clusters = {
        how: KMeans(n_clusters=8, n_init=4, random_state=0).fit_predict(vectors)
        for how, vectors in {"alone": alone, **ways}.items()
    }
    for how, labels in clusters.items():
        np.testing.assert_array_equal(labels, clusters["alone"], err_msg=f"clusters of {how}")
