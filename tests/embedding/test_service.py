"""The embedding service over real sockets: started with the bootstrap, called through generated stubs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from typing import cast

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from briefxai.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from briefxai_common.bootstrap import RunningService, start_service
from briefxai_common.vectors import unpack_vectors
from briefxai_embedding.backends.sentence_transformers import SentenceTransformersBackend
from briefxai_embedding.server import build_service
from briefxai_embedding.servicer import SERVICE_NAME
from briefxai_embedding.settings import EmbeddingSettings
from tests.support.errors import field_violations
from tests.support.fake_openai import Behaviour, FakeOpenAI, hash_unit_vector
from tests.support.http import http_get
from tests.support.ports import free_port
from tests.support.services import assert_serving, local_settings

MAX_TEXTS = 4
MAX_CHARS = 50
TEXTS = ["How do I reset my password?", "I forgot my password.", "Banana bread recipe", ""]


def service_settings(**overrides: object) -> EmbeddingSettings:
    limits = {"max_texts_per_request": MAX_TEXTS, "max_chars_per_text": MAX_CHARS}
    return local_settings(EmbeddingSettings, **{**limits, **overrides})


@pytest.fixture
async def running(torch_backend: SentenceTransformersBackend) -> AsyncIterator[RunningService]:
    service = await start_service(build_service(service_settings(), backend=torch_backend))
    yield service
    await service.stop(grace=0)


@pytest.fixture
async def stub(running: RunningService) -> AsyncIterator[embedding_pb2_grpc.EmbeddingServiceAsyncStub]:
    async with grpc.aio.insecure_channel(running.address) as channel:
        yield cast(
            "embedding_pb2_grpc.EmbeddingServiceAsyncStub", embedding_pb2_grpc.EmbeddingServiceStub(channel)
        )


async def chunks(*texts_per_chunk: Iterable[str]) -> AsyncIterator[embedding_pb2.StreamEmbedTextsRequest]:
    for texts in texts_per_chunk:
        yield embedding_pb2.StreamEmbedTextsRequest(texts=list(texts))


async def test_embed_texts_returns_unit_vectors_in_order(
    stub: embedding_pb2_grpc.EmbeddingServiceAsyncStub,
) -> None:
    reply = await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=TEXTS))
    assert reply.model == "sentence-transformers/all-MiniLM-L6-v2"
    assert (reply.vectors.count, reply.vectors.dim) == (4, 384)
    vectors = unpack_vectors(reply.vectors.data, reply.vectors.dim, reply.vectors.count)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert len(reply.token_counts) == 4
    assert reply.token_counts[3] == 2
    assert list(reply.truncated) == [False] * 4


async def test_stream_answers_each_chunk_with_its_offset(
    stub: embedding_pb2_grpc.EmbeddingServiceAsyncStub,
) -> None:
    whole = await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=TEXTS))
    expected = unpack_vectors(whole.vectors.data, whole.vectors.dim, whole.vectors.count)
    replies = [reply async for reply in stub.StreamEmbedTexts(chunks(TEXTS[:1], TEXTS[1:3], TEXTS[3:]))]
    assert [reply.offset for reply in replies] == [0, 1, 3]
    assert [reply.vectors.count for reply in replies] == [1, 2, 1]
    streamed = np.concatenate(
        [unpack_vectors(r.vectors.data, r.vectors.dim, r.vectors.count) for r in replies], axis=0
    )
    np.testing.assert_allclose(streamed, expected, atol=1e-5)
    assert [count for r in replies for count in r.token_counts] == list(whole.token_counts)


async def test_stream_stops_at_a_bad_chunk_after_answering_the_good_ones(
    stub: embedding_pb2_grpc.EmbeddingServiceAsyncStub,
) -> None:
    call = stub.StreamEmbedTexts(chunks(["fine", "also fine"], ["ok", "x" * (MAX_CHARS + 1)], ["never"]))
    first = await call.read()
    assert isinstance(first, embedding_pb2.StreamEmbedTextsResponse)
    assert (first.offset, first.vectors.count) == (0, 2)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    [(field, description)] = field_violations(caught.value)
    assert field == "texts[1]"
    assert "stream chunk 1 (offset 2)" in description
    assert f"at most {MAX_CHARS} characters" in description


async def test_model_info_describes_model_and_limits(
    stub: embedding_pb2_grpc.EmbeddingServiceAsyncStub,
) -> None:
    info = await stub.GetModelInfo(embedding_pb2.GetModelInfoRequest())
    assert info.model == "sentence-transformers/all-MiniLM-L6-v2"
    assert info.backend == "sentence-transformers"
    assert (info.dim, info.max_tokens, info.normalized) == (384, 256, True)
    assert (info.max_texts_per_request, info.max_chars_per_text) == (MAX_TEXTS, MAX_CHARS)


async def test_health_is_serving_with_model_details(running: RunningService) -> None:
    await assert_serving(running.address, SERVICE_NAME)
    status, body = await asyncio.to_thread(http_get, running.http_port, "/health")
    assert status == 200
    document = json.loads(body)
    assert document["service"] == "embedding"
    assert (document["status"], document["grpc_status"]) == ("healthy", "SERVING")
    assert document["model_ready"] is True and "database_status" not in document
    assert document["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert (document["backend"], document["dim"]) == ("sentence-transformers", 384)


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        ([], [("texts", "at least one text is required")]),
        (["a"] * (MAX_TEXTS + 1), [("texts", f"at most {MAX_TEXTS} texts per request")]),
        (
            ["ok", "x" * (MAX_CHARS + 1), "ok", "y" * (MAX_CHARS + 9)],
            [
                ("texts[1]", f"at most {MAX_CHARS} characters (max_chars_per_text), got {MAX_CHARS + 1}"),
                ("texts[3]", f"at most {MAX_CHARS} characters (max_chars_per_text), got {MAX_CHARS + 9}"),
            ],
        ),
    ],
    ids=["empty", "too-many-texts", "too-long-texts"],
)
async def test_bad_requests_are_invalid_argument_and_the_service_keeps_serving(
    stub: embedding_pb2_grpc.EmbeddingServiceAsyncStub, texts: list[str], expected: list[tuple[str, str]]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=texts))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = field_violations(caught.value)
    assert [field for field, _ in found] == [field for field, _ in expected]
    for (_, description), (_, fragment) in zip(found, expected, strict=True):
        assert fragment in description
    reply = await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["still serving"]))
    assert reply.vectors.count == 1


async def test_text_at_the_character_limit_is_accepted(
    stub: embedding_pb2_grpc.EmbeddingServiceAsyncStub,
) -> None:
    reply = await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["x" * MAX_CHARS] * MAX_TEXTS))
    assert reply.vectors.count == MAX_TEXTS


async def test_openai_backend_service(fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    """NOT_SERVING (and UNAVAILABLE calls) while the backend starts (a slow probe); then the API's vectors."""
    monkeypatch.setenv("BRIEFXAI_TEST_EMBEDDING_KEY", "sk-test")
    settings = service_settings(
        backend="openai",
        grpc_port=free_port(),
        openai={
            "base_url": fake_openai.base_url,
            "model": "fake-embedder",
            "api_key_env": "BRIEFXAI_TEST_EMBEDDING_KEY",
        },
        retry_policies={"embedding_remote": {"max_attempts": 1}},
    )
    fake_openai.script_embeddings(Behaviour.delay(2.0))
    starting = asyncio.create_task(start_service(build_service(settings)))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{settings.grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), wait_for_ready=True)
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as early:
            await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["too early"]))
        assert early.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "still loading" in (early.value.details() or "")
        running = await starting
        try:
            reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            info = await stub.GetModelInfo(embedding_pb2.GetModelInfoRequest())
            assert (info.model, info.backend, info.dim, info.max_tokens) == ("fake-embedder", "openai", 8, 0)
            answer = await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["alpha", "beta"]))
            vectors = unpack_vectors(answer.vectors.data, answer.vectors.dim, answer.vectors.count)
            expected = np.array([hash_unit_vector("alpha", 8), hash_unit_vector("beta", 8)])
            np.testing.assert_allclose(vectors, expected, atol=1e-6)
            assert answer.model == "fake-embedder"

            fake_openai.script_embeddings(Behaviour.server_error(500))
            with pytest.raises(grpc.aio.AioRpcError) as caught:  # "alpha" would come from the cache
                await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["gamma"]))
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "HTTP 500" in (caught.value.details() or "")
            again = await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["gamma"]))
            assert again.vectors.count == 1
        finally:
            await running.stop(grace=0)
