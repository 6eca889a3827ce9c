"""The bundled all-MiniLM-L6-v2 backend: unit vectors, stable, meaningful, truncation reported."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from briefxai_embedding.backends import EmbeddingBackend
from briefxai_embedding.backends.sentence_transformers import MODEL_NAME, SentenceTransformersBackend

TEXTS = [
    "How do I reset my password?",
    "I forgot my password and need to change it.",
    "What is a good recipe for banana bread?",
    "Write a Python function that reverses a linked list.",
]
LONG_TEXT = " ".join(f"word{i} describes a long support conversation about billing" for i in range(120))


def test_describes_the_model(torch_backend: SentenceTransformersBackend) -> None:
    assert isinstance(torch_backend, EmbeddingBackend)
    assert torch_backend.model == MODEL_NAME == "sentence-transformers/all-MiniLM-L6-v2"
    assert torch_backend.backend == "sentence-transformers"
    assert torch_backend.dim == 384
    assert torch_backend.max_tokens == 256
    assert torch_backend.normalized


async def test_vectors_are_float32_unit_length_in_input_order(
    torch_backend: SentenceTransformersBackend,
) -> None:
    result = await torch_backend.embed(TEXTS)
    assert result.vectors.shape == (4, 384)
    assert result.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    # Each row belongs to its own text, whatever order the backend batched them in.
    for i, text in enumerate(TEXTS):
        alone = await torch_backend.embed([text])
        np.testing.assert_allclose(result.vectors[i], alone.vectors[0], atol=1e-5)


async def test_same_input_gives_same_vectors(torch_backend: SentenceTransformersBackend) -> None:
    first = await torch_backend.embed(TEXTS)
    second = await torch_backend.embed(TEXTS)
    np.testing.assert_array_equal(first.vectors, second.vectors)
    assert first.token_counts == second.token_counts


async def test_similar_texts_are_closer_than_unrelated_ones(
    torch_backend: SentenceTransformersBackend,
) -> None:
    vectors = (await torch_backend.embed(TEXTS)).vectors
    cosine = vectors @ vectors.T
    assert cosine[0, 1] > 0.6
    assert cosine[0, 1] > cosine[0, 2] + 0.3
    assert cosine[0, 1] > cosine[0, 3] + 0.3


async def test_long_text_is_flagged_truncated(torch_backend: SentenceTransformersBackend) -> None:
    result = await torch_backend.embed(["short text", LONG_TEXT])
    assert result.truncated == [False, True]
    assert result.token_counts[1] == 256
    assert 2 < result.token_counts[0] < 10


async def test_empty_string_is_embedded(torch_backend: SentenceTransformersBackend) -> None:
    result = await torch_backend.embed(["", "hello"])
    assert result.token_counts[0] == 2  # [CLS] [SEP]
    assert result.truncated == [False, False]
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)


async def test_many_batches_keep_order(
    torch_backend: SentenceTransformersBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [f"{'very ' * (i % 7)}text number {i}" for i in range(11)]
    whole = await torch_backend.embed(texts)
    monkeypatch.setattr(torch_backend, "batch_size", 3)
    batched = await torch_backend.embed(texts)
    np.testing.assert_allclose(batched.vectors, whole.vectors, atol=1e-5)
    assert batched.token_counts == whole.token_counts


async def test_no_texts_gives_an_empty_result(torch_backend: SentenceTransformersBackend) -> None:
    result = await torch_backend.embed([])
    assert result.vectors.shape == (0, 384)
    assert len(result) == 0


@settings(max_examples=15, deadline=None)
@given(st.lists(st.text(max_size=200), min_size=1, max_size=4))
async def test_any_text_gives_unit_vectors_and_bounded_cosines(
    torch_backend: SentenceTransformersBackend, texts: list[str]
) -> None:
    result = await torch_backend.embed(texts)
    norms = np.linalg.norm(result.vectors.astype(np.float64), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    cosine = result.vectors.astype(np.float64) @ result.vectors.T.astype(np.float64)
    assert np.all(np.abs(cosine) <= 1.0 + 1e-5)
    assert all(1 <= count <= 256 for count in result.token_counts)


def test_rejects_nonsense_construction() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        SentenceTransformersBackend(batch_size=0)
