"""The OpenAI-compatible backend against the scripted fake server: vectors, batching, and failures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest

from briefxai_common.config import ConfigError
from briefxai_common.errors import FailedPrecondition, InvalidArgument, Unavailable
from briefxai_common.resilience import RetryPolicy
from briefxai_embedding.backends import EmbeddingBackend
from briefxai_embedding.backends.openai import NO_KEY, OpenAIBackend, resolve_api_key
from briefxai_embedding.settings import OpenAIEmbeddingSettings
from tests.support.fake_openai import Behaviour, FakeOpenAI, hash_unit_vector

KEY_ENV = "BRIEFXAI_TEST_EMBEDDING_KEY"
NO_RETRY = RetryPolicy(max_attempts=1)


def openai_settings(fake: FakeOpenAI, **overrides: object) -> OpenAIEmbeddingSettings:
    values: dict[str, object] = {
        "base_url": fake.base_url,
        "model": "fake-embedder",
        "api_key_env": KEY_ENV,
        "timeout_seconds": 5.0,
    }
    values.update(overrides)
    return OpenAIEmbeddingSettings.model_validate(values)


@pytest.fixture
async def backend(fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[OpenAIBackend]:
    monkeypatch.setenv(KEY_ENV, "sk-test-embedding-key")
    settings = openai_settings(fake_openai, batch_size=3)
    backend = OpenAIBackend(settings, resolve_api_key(settings), retry_policy=NO_RETRY)
    await backend.load()
    fake_openai.reset()
    yield backend
    await backend.close()


async def test_learns_dim_at_load_and_returns_the_api_vectors(
    backend: OpenAIBackend, fake_openai: FakeOpenAI
) -> None:
    assert isinstance(backend, EmbeddingBackend)
    assert (backend.model, backend.backend, backend.dim, backend.max_tokens) == (
        "fake-embedder",
        "openai",
        8,
        0,
    )
    texts = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"]
    result = await backend.embed(texts)
    expected = np.array([hash_unit_vector(text, 8) for text in texts], dtype=np.float32)
    np.testing.assert_allclose(result.vectors, expected, atol=1e-6)
    assert result.token_counts == [0] * 7
    assert result.truncated == [False] * 7
    sent = fake_openai.requests_to("embeddings")
    assert [r.body["input"] for r in sent] == [texts[0:3], texts[3:6], texts[6:7]]
    assert {r.body["model"] for r in sent} == {"fake-embedder"}
    assert {r.headers["Authorization"] for r in sent} == {"Bearer sk-test-embedding-key"}


async def test_vectors_are_scaled_to_unit_length(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    fake_openai.script_embeddings(Behaviour.embed([[0.0] * 6 + [3.0, 4.0]]))
    result = await backend.embed(["x"])
    np.testing.assert_allclose(result.vectors[0, 6:], [0.6, 0.8], rtol=1e-6)


async def test_answers_out_of_index_order_are_put_back_in_order(
    backend: OpenAIBackend, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script_embeddings(Behaviour.embed([[1.0] + [0.0] * 7, [0.0, 1.0] + [0.0] * 6]))
    result = await backend.embed(["first", "second"])
    assert result.vectors[0, 0] == 1.0
    assert result.vectors[1, 1] == 1.0


async def test_empty_text_is_sent_as_a_space(backend: OpenAIBackend, fake_openai: FakeOpenAI) -> None:
    await backend.embed(["", "word"])
    assert fake_openai.requests_to("embeddings")[0].body["input"] == [" ", "word"]


async def test_configured_dimensions_are_requested(fake_openai: FakeOpenAI) -> None:
    settings = openai_settings(fake_openai, dimensions=16, api_key_env="")
    backend = OpenAIBackend(settings, resolve_api_key(settings), retry_policy=NO_RETRY)
    await backend.load()
    try:
        assert backend.dim == 16
        assert fake_openai.requests_to("embeddings") == []  # no probe needed
        result = await backend.embed(["a"])
        assert result.vectors.shape == (1, 16)
        request = fake_openai.requests_to("embeddings")[0]
        assert request.body["dimensions"] == 16
        assert request.headers["Authorization"] == f"Bearer {NO_KEY}"
    finally:
        await backend.close()


async def test_base64_answers_are_decoded(fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "k")
    settings = openai_settings(fake_openai, encoding_format="base64")
    backend = OpenAIBackend(settings, resolve_api_key(settings), retry_policy=NO_RETRY)
    await backend.load()
    try:
        result = await backend.embed(["alpha"])
        np.testing.assert_allclose(result.vectors[0], hash_unit_vector("alpha", 8), atol=1e-6)
        assert fake_openai.requests_to("embeddings")[-1].body["encoding_format"] == "base64"
    finally:
        await backend.close()


async def test_rate_limit_is_retried(fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "k")
    settings = openai_settings(fake_openai, dimensions=8)
    backend = OpenAIBackend(settings, resolve_api_key(settings), retry_policy=RetryPolicy(3, 0.0, 0.01))
    await backend.load()
    try:
        fake_openai.script_embeddings(Behaviour.rate_limited(retry_after=0), Behaviour.server_error(503))
        result = await backend.embed(["alpha"])
        np.testing.assert_allclose(result.vectors[0], hash_unit_vector("alpha", 8), atol=1e-6)
        assert len(fake_openai.requests_to("embeddings")) == 3
    finally:
        await backend.close()


@pytest.mark.parametrize(
    ("behaviour", "error", "message"),
    [
        (Behaviour.rate_limited(), Unavailable, "HTTP 429"),
        (Behaviour.server_error(500), Unavailable, "HTTP 500"),
        (Behaviour.server_error(503), Unavailable, "HTTP 503"),
        (Behaviour.server_error(400), InvalidArgument, "HTTP 400"),
        (Behaviour.server_error(401), FailedPrecondition, "HTTP 401"),
        (Behaviour.server_error(404), FailedPrecondition, "HTTP 404"),
        (Behaviour.broken_body(), Unavailable, "malformed"),
        (Behaviour.broken_body('{"object": "list", "data": 5}'), Unavailable, "malformed"),
        (Behaviour.embed([[1.0, 0.0]]), Unavailable, "1 vectors for 2 texts"),
        (Behaviour.embed([[1.0, 0.0], [1.0, 0.0, 0.0]]), Unavailable, "malformed"),
        (Behaviour.embed([[0.0] * 8, [1.0] * 8]), Unavailable, "zero length"),
        (Behaviour.embed([[1.0] * 4, [1.0] * 4]), Unavailable, "4-dim vectors where 8 were expected"),
    ],
)
async def test_failures_map_to_domain_errors(
    backend: OpenAIBackend,
    fake_openai: FakeOpenAI,
    behaviour: Behaviour,
    error: type[Exception],
    message: str,
) -> None:
    fake_openai.script_embeddings(behaviour)
    with pytest.raises(error, match=message):
        await backend.embed(["one", "two"])
    # The backend keeps working after a failure.
    assert (await backend.embed(["one"])).vectors.shape == (1, 8)


async def test_timeout_is_unavailable(fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "k")
    settings = openai_settings(fake_openai, timeout_seconds=0.3, dimensions=8)
    backend = OpenAIBackend(settings, resolve_api_key(settings), retry_policy=NO_RETRY)
    await backend.load()
    try:
        fake_openai.script_embeddings(Behaviour.delay(2.0))
        with pytest.raises(Unavailable, match="unreachable"):
            await backend.embed(["slow"])
    finally:
        await backend.close()


async def test_unreachable_api_at_load_leaves_dim_unknown_until_first_answer(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "k")
    backend = OpenAIBackend(openai_settings(fake_openai), "k", retry_policy=NO_RETRY)
    fake_openai.script_embeddings(Behaviour.server_error(503))
    await backend.load()
    try:
        assert backend.dim == 0
        assert (await backend.embed(["a"])).vectors.shape == (1, 8)
        assert backend.dim == 8
    finally:
        await backend.close()


async def test_batches_run_concurrently_up_to_the_limit(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = openai_settings(fake_openai, batch_size=1, max_concurrent_requests=2, dimensions=8)
    backend = OpenAIBackend(settings, "k", retry_policy=NO_RETRY)
    await backend.load()
    try:
        fake_openai.script_embeddings(*[Behaviour.delay(0.1) for _ in range(6)])
        result = await backend.embed([f"t{i}" for i in range(6)])
        assert result.vectors.shape == (6, 8)
        assert fake_openai.max_in_flight["embeddings"] == 2
    finally:
        await backend.close()


def test_missing_api_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRIEFXAI_TEST_UNSET_KEY", raising=False)
    settings = OpenAIEmbeddingSettings.model_validate({"api_key_env": "BRIEFXAI_TEST_UNSET_KEY"})
    with pytest.raises(ConfigError, match="BRIEFXAI_TEST_UNSET_KEY is not set"):
        resolve_api_key(settings)


async def test_embed_before_load_is_a_failed_precondition(fake_openai: FakeOpenAI) -> None:
    backend = OpenAIBackend(openai_settings(fake_openai), "k", retry_policy=NO_RETRY)
    with pytest.raises(FailedPrecondition):
        await backend.embed(["a"])
