"""The remote backend with a local fallback: the scripted OpenAI-compatible server first, the real ONNX
model while it is unavailable, and never the other embedding space for a batch pinned to a model."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from prometheus_client import REGISTRY

from briefxai.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from briefxai_common.bootstrap import start_service
from briefxai_common.config import BreakerSettings, ConfigError
from briefxai_common.errors import Unavailable
from briefxai_common.interceptors import status_details
from briefxai_common.resilience import CircuitState, RetryPolicy
from briefxai_embedding.backends import (
    MODEL_PINNED,
    EmbeddingBackend,
    ModelPinned,
    create_backend,
    embed_with_model,
)
from briefxai_embedding.backends.failover import FailoverBackend
from briefxai_embedding.backends.onnx import OnnxBackend
from briefxai_embedding.backends.openai import OpenAIBackend
from briefxai_embedding.server import build_service
from briefxai_embedding.settings import EmbeddingSettings, OpenAIEmbeddingSettings
from tests.support.fake_openai import Behaviour, FakeOpenAI

REMOTE = "fake-embedder"


def failovers(outcome: str) -> float:
    labels = {"service": "embedding", "from": "openai", "to": "onnx", "outcome": outcome}
    return REGISTRY.get_sample_value("briefxai_failovers_total", labels) or 0.0


@pytest.fixture
async def backend(
    fake_openai: FakeOpenAI, default_onnx_backend: OnnxBackend
) -> AsyncIterator[FailoverBackend]:
    remote = OpenAIBackend(
        OpenAIEmbeddingSettings(
            base_url=fake_openai.base_url, model=REMOTE, api_key_env="", timeout_seconds=5
        ),
        "k",
        retry_policy=RetryPolicy(max_attempts=1),
        breaker=BreakerSettings.model_validate(
            {"failure_threshold": 2, "open_timeout_ms": 600_000, "probe_interval_ms": 600_000}
        ),
    )
    failover = FailoverBackend(remote, default_onnx_backend)
    await remote.load()  # the shared local model is loaded (and closed) by its fixture
    fake_openai.reset()
    yield failover
    await remote.close()


async def test_the_remote_model_serves_while_it_is_up(backend: FailoverBackend) -> None:
    assert isinstance(backend, EmbeddingBackend)
    result = await backend.embed(["alpha", "beta"])
    assert result.model == REMOTE and result.vectors.shape == (2, 8)
    assert (backend.model, backend.backend, backend.dim) == (REMOTE, "openai", 8)


async def test_a_batch_pinned_to_the_remote_model_is_refused_not_failed_over(
    backend: FailoverBackend, fake_openai: FakeOpenAI, default_onnx_backend: OnnxBackend
) -> None:
    fake_openai.script_embeddings(Behaviour.server_error(503))
    served = failovers("ok")
    with pytest.raises(ModelPinned) as refused:
        await backend.embed(["alpha"], model=REMOTE)
    error = refused.value
    assert error.code_name == "FAILED_PRECONDITION" and error.reason == MODEL_PINNED
    assert REMOTE in str(error) and default_onnx_backend.model in str(error)
    assert (error.pinned, error.serving) == (REMOTE, default_onnx_backend.model)
    assert failovers("ok") == served  # nothing was embedded in the other space
    # not pinned, before the breaker opens: UNAVAILABLE, for the caller to retry
    fake_openai.script_embeddings(Behaviour.server_error(503))
    with pytest.raises(Unavailable):
        await backend.embed(["alpha"])


async def test_while_the_remote_breaker_is_open(
    backend: FailoverBackend, fake_openai: FakeOpenAI, default_onnx_backend: OnnxBackend
) -> None:
    fake_openai.script_embeddings(Behaviour.server_error(500), Behaviour.server_error(500))
    for _ in range(2):
        with pytest.raises(ModelPinned):
            await backend.embed(["alpha"], model=REMOTE)
    assert backend.primary.breaker.state is CircuitState.OPEN
    # GetModelInfo describes the model a new analysis gets now
    assert (backend.model, backend.backend, backend.dim) == (default_onnx_backend.model, "onnx", 384)
    requests = len(fake_openai.requests_to("embeddings"))
    with pytest.raises(ModelPinned, match="circuit breaker embedding_remote is open"):
        await backend.embed(["alpha"], model=REMOTE)
    # a batch no analysis pinned fails over to the local model, which the result names
    served = failovers("ok")
    result = await backend.embed(["alpha", "beta"])
    assert result.model == default_onnx_backend.model and result.vectors.shape == (2, 384)
    assert failovers("ok") == served + 1
    # an analysis pinned to the local model keeps it, whatever the remote's state
    pinned = await backend.embed(["gamma"], model=default_onnx_backend.model)
    assert pinned.model == default_onnx_backend.model
    assert len(fake_openai.requests_to("embeddings")) == requests  # the open breaker called nothing


async def test_a_model_the_service_does_not_have_is_refused(backend: FailoverBackend) -> None:
    with pytest.raises(ModelPinned, match="text-embedding-3-large"):
        await backend.embed(["alpha"], model="text-embedding-3-large")


def test_the_refusal_on_the_wire() -> None:
    """FAILED_PRECONDITION with ErrorInfo (reason, both models) and RetryInfo: the gateway retries later."""
    error = ModelPinned("pinned", pinned="a", serving="b", retry_after_seconds=2.5)
    code, _, trailers = status_details(error)
    assert code.name == "FAILED_PRECONDITION"
    status = status_pb2.Status.FromString(dict(trailers)["grpc-status-details-bin"])
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info) and status.details[1].Unpack(retry)
    assert info.reason == MODEL_PINNED and dict(info.metadata) == {"pinned_model": "a", "serving_model": "b"}
    assert retry.retry_delay.seconds == 2 and retry.retry_delay.nanos == 500_000_000


def test_the_chain_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    settings = EmbeddingSettings.load(
        backend="openai", fallback="onnx", circuit_breakers={"embedding_remote": {"failure_threshold": 7}}
    )
    chain = create_backend(settings)
    assert isinstance(chain, FailoverBackend) and isinstance(chain.fallback, OnnxBackend)
    assert chain.primary.breaker.failure_threshold == 7
    with pytest.raises(ConfigError, match="fallback 'onnx' needs backend 'openai'"):
        EmbeddingSettings.load(backend="onnx", fallback="onnx")


async def test_a_single_model_backend_refuses_another_model(default_onnx_backend: OnnxBackend) -> None:
    result = await embed_with_model(default_onnx_backend, ["alpha"], default_onnx_backend.model)
    assert result.model == default_onnx_backend.model
    with pytest.raises(ModelPinned, match="text-embedding-3-small"):
        await embed_with_model(default_onnx_backend, ["alpha"], "text-embedding-3-small")


async def test_pinned_batches_through_the_service(fake_openai: FakeOpenAI) -> None:
    """EmbedTextsRequest.model through the real service: a pinned batch is refused while the remote
    endpoint is down, an unpinned one fails over, the response names its model, and the cache never
    answers one model's text with the other's vector."""
    settings = EmbeddingSettings.load(
        host="127.0.0.1",
        grpc_port=0,
        http_port=0,
        grace_period_seconds=0,
        backend="openai",
        fallback="onnx",
        openai={"base_url": fake_openai.base_url, "model": "remote", "api_key_env": ""},
        retry_policies={"embedding_remote": {"max_attempts": 1}},
        circuit_breakers={
            "embedding_remote": {
                "failure_threshold": 1,
                "open_timeout_ms": 600000,
                "probe_interval_ms": 600000,
            }
        },
    )
    running = await start_service(build_service(settings))
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
            ok = await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["a"], model="remote"))
            assert ok.model == "remote" and ok.vectors.dim == 8
            fake_openai.script_embeddings(Behaviour.server_error(503))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["b"], model="remote"))
            assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
            assert "'remote'" in refused.value.details() and "all-MiniLM-L6-v2" in refused.value.details()
            info = await stub.GetModelInfo(embedding_pb2.GetModelInfoRequest())
            assert info.backend == "onnx" and info.dim == 384
            # "a" was cached from the remote model: the fallback must not answer it from that entry
            local = await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["a"]))
            assert local.model == info.model and local.vectors.dim == 384
            again = await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["a"], model=info.model))
            assert again.model == info.model and again.vectors.data == local.vectors.data
    finally:
        await running.stop(grace=0)
