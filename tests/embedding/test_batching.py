"""Micro-batching: merging, the wait budget, size limits, dedupe, errors and cancellation.

Unit tests use a small recording backend (a test double of the backend interface, not one of our
services); the last tests run the real gRPC service on the ONNX backend.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence
from typing import cast

import grpc
import numpy as np
import numpy.typing as npt
import pytest
from prometheus_client import REGISTRY

from briefxai.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from briefxai_common.bootstrap import RunningService, start_service
from briefxai_common.errors import InvalidArgument, Unavailable
from briefxai_common.vectors import unpack_vectors
from briefxai_embedding.backends import EmbedResult
from briefxai_embedding.backends.onnx import OnnxBackend
from briefxai_embedding.batching import BatchPolicy, MicroBatcher
from briefxai_embedding.cache import EmbeddingCache
from briefxai_embedding.embedder import Embedder, Limits
from briefxai_embedding.server import build_service
from briefxai_embedding.settings import EmbeddingSettings
from tests.embedding.sentences import VARIED
from tests.support.services import local_settings

DIM = 4
LONG = 0.05  # a wait budget every test request arrives well within


def vector_of(text: str) -> npt.NDArray[np.float32]:
    digest = hashlib.sha256(text.encode()).digest()
    return (np.frombuffer(digest[: DIM * 4], dtype=np.uint32) / 2**32).astype(np.float32)


class RecordingBackend:
    """Deterministic vectors from a hash; records each ``embed`` call; can hold a call or fail it."""

    model = "test/recording"
    backend = "recording"
    dim = DIM
    max_tokens = 8
    normalized = False
    tokenizer_file = None

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate: asyncio.Event | None = None  # while set and not open, calls wait on it
        self.fail_on: dict[str, BaseException] = {}  # a call holding this text raises this error
        self.entered = asyncio.Event()  # set by the first call

    async def load(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def embed(self, texts: Sequence[str]) -> EmbedResult:
        self.calls.append(list(texts))
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        for text in texts:
            if text in self.fail_on:
                raise self.fail_on[text]
        return expected(texts)


def expected(texts: Sequence[str]) -> EmbedResult:
    return EmbedResult(
        vectors=np.array([vector_of(t) for t in texts], dtype=np.float32).reshape(len(texts), DIM),
        token_counts=[len(t.split()) for t in texts],
        truncated=[len(t) > 10 for t in texts],
    )


def assert_rows(result: EmbedResult, texts: Sequence[str]) -> None:
    want = expected(texts)
    assert result.vectors.tobytes() == want.vectors.tobytes()
    assert (result.token_counts, result.truncated) == (want.token_counts, want.truncated)


@pytest.fixture
def backend() -> RecordingBackend:
    return RecordingBackend()


async def started(
    backend: RecordingBackend, *, max_batch_texts: int = 256, wait: float = LONG, cache_bytes: int = 0
) -> MicroBatcher:
    batcher = MicroBatcher(backend, BatchPolicy(max_batch_texts, wait), EmbeddingCache(cache_bytes))
    batcher.start()
    return batcher


def sample(name: str, backend: str = "recording") -> float:
    return REGISTRY.get_sample_value(name, {"backend": backend}) or 0.0


async def test_concurrent_small_requests_merge_into_one_call_with_rows_in_order(
    backend: RecordingBackend,
) -> None:
    batcher = await started(backend)
    requests = [[f"text {i}", f"other {i}"] for i in range(8)]
    merged_before = sample("briefxai_embedding_backend_batch_requests_sum")
    results = await asyncio.gather(*(batcher.embed(texts) for texts in requests))
    await batcher.stop()
    assert backend.calls == [[t for texts in requests for t in texts]]
    for result, texts in zip(results, requests, strict=True):
        assert_rows(result, texts)
    assert sample("briefxai_embedding_backend_batch_requests_sum") - merged_before == 8


@pytest.mark.parametrize(("wait", "dispatched_alone"), [(0.0, True), (1.0, False)])
async def test_wait_budget(backend: RecordingBackend, wait: float, dispatched_alone: bool) -> None:
    """With 0 a lone request goes at once; with a budget it waits for company, then goes anyway."""
    batcher = await started(backend, wait=wait)
    loop = asyncio.get_running_loop()
    began = loop.time()
    first = asyncio.create_task(batcher.embed(["first"]))
    await asyncio.sleep(0.1)
    assert (backend.calls == [["first"]]) is dispatched_alone
    second = asyncio.create_task(batcher.embed(["second"]))
    assert_rows(await first, ["first"])
    assert_rows(await second, ["second"])
    await batcher.stop()
    if dispatched_alone:
        assert backend.calls == [["first"], ["second"]]
    else:
        assert backend.calls == [["first", "second"]]
        assert loop.time() - began >= 0.9  # the budget runs from the oldest request's arrival


async def test_max_batch_texts_splits_merged_requests_fifo(backend: RecordingBackend) -> None:
    batcher = await started(backend, max_batch_texts=4)
    requests = [[f"r{i}a", f"r{i}b"] for i in range(5)]
    results = await asyncio.gather(*(batcher.embed(texts) for texts in requests))
    await batcher.stop()
    assert backend.calls == [
        ["r0a", "r0b", "r1a", "r1b"],
        ["r2a", "r2b", "r3a", "r3b"],
        ["r4a", "r4b"],
    ]
    for result, texts in zip(results, requests, strict=True):
        assert_rows(result, texts)


async def test_a_request_over_max_batch_texts_goes_alone_and_whole(backend: RecordingBackend) -> None:
    batcher = await started(backend, max_batch_texts=4)
    big = [f"big {i}" for i in range(10)]
    requests = [["small a", "small b"], big, ["small c"]]
    results = await asyncio.gather(*(batcher.embed(texts) for texts in requests))
    await batcher.stop()
    assert backend.calls == requests
    for result, texts in zip(results, requests, strict=True):
        assert_rows(result, texts)


async def test_duplicates_are_sent_once_and_every_caller_gets_its_rows(backend: RecordingBackend) -> None:
    batcher = await started(backend)
    requests = [["a", "b", "a"], ["b", "c"], ["a"]]
    deduplicated_before = sample("briefxai_embedding_deduplicated_texts_total")
    results = await asyncio.gather(*(batcher.embed(texts) for texts in requests))
    await batcher.stop()
    assert backend.calls == [["a", "b", "c"]]
    for result, texts in zip(results, requests, strict=True):
        assert_rows(result, texts)
    assert sample("briefxai_embedding_deduplicated_texts_total") - deduplicated_before == 3


async def test_duplicates_count_against_max_batch_texts_once(backend: RecordingBackend) -> None:
    batcher = await started(backend, max_batch_texts=3)
    requests = [["a", "b"], ["b", "a", "c"], ["d"]]
    await asyncio.gather(*(batcher.embed(texts) for texts in requests))
    await batcher.stop()
    assert backend.calls == [["a", "b", "c"], ["d"]]


async def test_cached_texts_skip_the_backend(backend: RecordingBackend) -> None:
    batcher = await started(backend, wait=0, cache_bytes=1 << 20)
    first = await batcher.embed(["x", "y"])
    hits_before = sample("briefxai_embedding_cache_hits_total")
    again = await batcher.embed(["y", "x"])  # all cached: answered without the dispatcher
    partly = await batcher.embed(["x", "z", "y", "z"])
    await batcher.stop()
    assert backend.calls == [["x", "y"], ["z"]]
    assert again.vectors[0].tobytes() == first.vectors[1].tobytes()
    assert again.vectors[1].tobytes() == first.vectors[0].tobytes()
    assert_rows(partly, ["x", "z", "y", "z"])
    assert sample("briefxai_embedding_cache_hits_total") - hits_before == 4
    assert (batcher.cache.hits, batcher.cache.misses) == (4, 4)  # x, y; then z twice
    assert sample("briefxai_embedding_cache_entries") == 3


@pytest.mark.parametrize("error", [Unavailable("backend down"), RuntimeError("bug in the backend")])
async def test_a_backend_error_fails_only_the_callers_of_that_batch(
    backend: RecordingBackend, error: Exception
) -> None:
    batcher = await started(backend, wait=0)
    backend.gate = asyncio.Event()
    backend.fail_on = {"boom": error}
    running = asyncio.create_task(batcher.embed(["fine"]))
    await asyncio.wait_for(backend.entered.wait(), 5)
    doomed = [asyncio.create_task(batcher.embed(texts)) for texts in (["boom"], ["bystander"])]
    await asyncio.sleep(0.01)
    backend.gate.set()
    assert_rows(await running, ["fine"])
    for task in doomed:
        with pytest.raises(type(error)) as caught:
            await task
        assert caught.value is error
    assert backend.calls == [["fine"], ["boom", "bystander"]]
    assert_rows(await asyncio.wait_for(batcher.embed(["later"]), 5), ["later"])
    assert batcher.running
    await batcher.stop()


async def test_a_caller_cancelled_while_queued_is_dropped(backend: RecordingBackend) -> None:
    batcher = await started(backend, wait=0)
    backend.gate = asyncio.Event()
    running = asyncio.create_task(batcher.embed(["running"]))
    await asyncio.wait_for(backend.entered.wait(), 5)
    gone = asyncio.create_task(batcher.embed(["gone"]))
    kept = asyncio.create_task(batcher.embed(["kept"]))
    await asyncio.sleep(0.01)
    gone.cancel()
    backend.gate.set()
    assert_rows(await running, ["running"])
    assert_rows(await kept, ["kept"])
    assert gone.cancelled()
    assert backend.calls == [["running"], ["kept"]]
    await batcher.stop()


async def test_a_caller_cancelled_while_its_batch_runs_does_not_break_the_dispatcher(
    backend: RecordingBackend,
) -> None:
    batcher = await started(backend, wait=0)
    backend.gate = asyncio.Event()
    impatient = asyncio.create_task(batcher.embed(["impatient"]))
    patient = asyncio.create_task(batcher.embed(["patient"]))
    await asyncio.wait_for(backend.entered.wait(), 5)
    impatient.cancel()
    await asyncio.sleep(0.01)
    backend.gate.set()
    assert_rows(await asyncio.wait_for(patient, 5), ["patient"])
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert backend.calls == [["impatient", "patient"]]
    assert_rows(await asyncio.wait_for(batcher.embed(["after"]), 5), ["after"])
    assert batcher.running
    await batcher.stop()


async def test_deadline_while_queued_through_wait_for(backend: RecordingBackend) -> None:
    batcher = await started(backend, wait=0)
    backend.gate = asyncio.Event()
    running = asyncio.create_task(batcher.embed(["running"]))
    await asyncio.wait_for(backend.entered.wait(), 5)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(batcher.embed(["late"]), 0.01)
    backend.gate.set()
    await running
    assert_rows(await asyncio.wait_for(batcher.embed(["next"]), 5), ["next"])
    assert backend.calls == [["running"], ["next"]]
    await batcher.stop()


async def test_stop_fails_waiting_callers_with_unavailable(backend: RecordingBackend) -> None:
    batcher = await started(backend, wait=0)
    backend.gate = asyncio.Event()
    running = asyncio.create_task(batcher.embed(["running"]))
    await asyncio.wait_for(backend.entered.wait(), 5)
    queued = asyncio.create_task(batcher.embed(["queued"]))
    await asyncio.sleep(0.01)
    await batcher.stop()
    for task in (running, queued):
        with pytest.raises(Unavailable, match="shutting down"):
            await task
    assert not batcher.running
    with pytest.raises(Unavailable):
        await batcher.embed(["after stop"])


async def test_concurrent_batches_overlap_up_to_the_limit(backend: RecordingBackend) -> None:
    """For a remote API: with max_concurrent_batches 2, a second batch starts while the first is held,
    a third waits for a free slot; stop() fails the held ones."""
    batcher = MicroBatcher(backend, BatchPolicy(1, 0, max_concurrent_batches=2), EmbeddingCache(0))
    batcher.start()
    backend.gate = asyncio.Event()
    tasks = [asyncio.create_task(batcher.embed([text])) for text in ("one", "two", "three")]
    await asyncio.sleep(0.05)
    assert backend.calls == [["one"], ["two"]]
    backend.gate.set()
    results = await asyncio.gather(*tasks)
    for result, text in zip(results, ("one", "two", "three"), strict=True):
        assert_rows(result, [text])
    assert backend.calls == [["one"], ["two"], ["three"]]
    backend.gate = asyncio.Event()
    held = [asyncio.create_task(batcher.embed([text])) for text in ("four", "five", "six")]
    await asyncio.sleep(0.05)
    await batcher.stop()
    for task in held:
        with pytest.raises(Unavailable, match="shutting down"):
            await task


async def test_embedder_keeps_validation_and_loading_errors(backend: RecordingBackend) -> None:
    embedder = Embedder(backend, Limits(max_texts_per_request=2, max_chars_per_text=5))
    with pytest.raises(InvalidArgument):
        await embedder.embed(["a", "b", "c"])
    with pytest.raises(Unavailable, match="still loading"):
        await embedder.embed(["a"])
    await embedder.start()
    texts_before = sample("briefxai_embedding_texts_total")
    results = await asyncio.gather(embedder.embed(["a", "b"]), embedder.embed(["a"]))
    assert_rows(results[0], ["a", "b"])
    assert_rows(results[1], ["a"])
    assert sample("briefxai_embedding_texts_total") - texts_before == 3
    assert backend.calls == [["a", "b"]]
    await embedder.stop()
    with pytest.raises(Unavailable):
        await embedder.embed(["a"])


# --- the real service on the ONNX backend ---------------------------------------------------------


async def serve(backend: OnnxBackend, **overrides: object) -> RunningService:
    settings = local_settings(EmbeddingSettings, **{"batch_wait_ms": 20.0, **overrides})
    return await start_service(build_service(settings, backend=backend))


@pytest.fixture
async def grpc_stub(
    default_onnx_backend: OnnxBackend,
) -> AsyncIterator[embedding_pb2_grpc.EmbeddingServiceAsyncStub]:
    running = await serve(default_onnx_backend)
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            yield cast(
                "embedding_pb2_grpc.EmbeddingServiceAsyncStub",
                embedding_pb2_grpc.EmbeddingServiceStub(channel),
            )
    finally:
        await running.stop(grace=0)


def vectors_of(reply: embedding_pb2.EmbedTextsResponse) -> npt.NDArray[np.float32]:
    return unpack_vectors(reply.vectors.data, reply.vectors.dim, reply.vectors.count)


async def test_concurrent_grpc_calls_merge_and_match_one_whole_call(
    default_onnx_backend: OnnxBackend,
) -> None:
    texts = VARIED[:32]
    running = await serve(default_onnx_backend, cache_max_mb=0)  # both rounds computed, none cached
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
            whole = await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=texts))
            calls_before = sample("briefxai_embedding_backend_batch_requests_count", "onnx")
            merged_before = sample("briefxai_embedding_backend_batch_requests_sum", "onnx")
            sizes_before = sample("briefxai_embedding_backend_batch_texts_sum", "onnx")
            singles = await asyncio.gather(
                *(stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=[text])) for text in texts)
            )
    finally:
        await running.stop(grace=0)
    calls = sample("briefxai_embedding_backend_batch_requests_count", "onnx") - calls_before
    assert sample("briefxai_embedding_backend_batch_requests_sum", "onnx") - merged_before == 32
    assert sample("briefxai_embedding_backend_batch_texts_sum", "onnx") - sizes_before == 32
    assert 1 <= calls < 32  # merged: fewer backend calls than requests
    np.testing.assert_allclose(
        np.concatenate([vectors_of(reply) for reply in singles]), vectors_of(whole), atol=1e-6
    )
    assert [reply.token_counts[0] for reply in singles] == list(whole.token_counts)


async def test_a_repeated_grpc_call_is_served_from_the_cache_with_identical_bytes(
    grpc_stub: embedding_pb2_grpc.EmbeddingServiceAsyncStub,
) -> None:
    request = embedding_pb2.EmbedTextsRequest(texts=[*VARIED[32:40], VARIED[32]])
    first = await grpc_stub.EmbedTexts(request)
    hits_before = sample("briefxai_embedding_cache_hits_total", "onnx")
    batches_before = sample("briefxai_embedding_backend_batch_texts_count", "onnx")
    again = await grpc_stub.EmbedTexts(request)
    assert sample("briefxai_embedding_cache_hits_total", "onnx") - hits_before == 9
    assert sample("briefxai_embedding_backend_batch_texts_count", "onnx") == batches_before
    assert again.vectors.data == first.vectors.data
    assert list(again.token_counts) == list(first.token_counts)
    assert list(again.truncated) == list(first.truncated)
