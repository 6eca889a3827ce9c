"""The content-hash LRU cache: keys, recency, the memory bound, counts; and bit-identical vectors on ONNX."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from briefxai_embedding.backends.onnx import OnnxBackend
from briefxai_embedding.batching import BatchPolicy
from briefxai_embedding.cache import ENTRY_OVERHEAD_BYTES, CachedEmbedding, EmbeddingCache, text_key
from briefxai_embedding.embedder import Embedder, Limits
from tests.embedding.sentences import VARIED

DIM = 4
ENTRY_SIZE = DIM * 4 + ENTRY_OVERHEAD_BYTES


def entry(value: float, token_count: int = 3, truncated: bool = False) -> CachedEmbedding:
    return CachedEmbedding(np.full(DIM, value, dtype=np.float32).tobytes(), token_count, truncated)


def test_key_is_the_16_byte_blake2b_digest_of_the_utf8_text() -> None:
    assert text_key("héllo") == hashlib.blake2b("héllo".encode(), digest_size=16).digest()
    assert len(text_key("")) == 16
    assert text_key("a") != text_key("b")


def test_get_counts_hits_and_misses_and_returns_what_was_put() -> None:
    cache = EmbeddingCache(max_bytes=10 * ENTRY_SIZE)
    assert cache.get(b"k1") is None
    cache.put(b"k1", entry(1.0, token_count=7, truncated=True))
    found = cache.get(b"k1")
    assert found == entry(1.0, token_count=7, truncated=True)
    assert cache.get(b"k2") is None
    assert (cache.hits, cache.misses) == (1, 2)
    assert (len(cache), cache.bytes) == (1, ENTRY_SIZE)


def test_peek_neither_counts_nor_refreshes() -> None:
    cache = EmbeddingCache(max_bytes=2 * ENTRY_SIZE)
    cache.put(b"old", entry(1.0))
    cache.put(b"new", entry(2.0))
    assert cache.peek(b"old") == entry(1.0)
    assert cache.peek(b"none") is None
    assert (cache.hits, cache.misses) == (0, 0)
    cache.put(b"third", entry(3.0))
    assert b"old" not in cache  # peeking did not make it recent


def test_least_recently_used_is_evicted_first() -> None:
    cache = EmbeddingCache(max_bytes=3 * ENTRY_SIZE)
    for key in (b"a", b"b", b"c"):
        cache.put(key, entry(1.0))
    assert cache.get(b"a") is not None  # a is now the most recent; b the least
    cache.put(b"d", entry(4.0))
    assert [key for key in (b"a", b"b", b"c", b"d") if key in cache] == [b"a", b"c", b"d"]
    cache.put(b"e", entry(5.0))
    assert [key for key in (b"a", b"b", b"c", b"d", b"e") if key in cache] == [b"a", b"d", b"e"]
    assert cache.evictions == 2


def test_bytes_stay_within_the_bound_and_count_vector_plus_overhead() -> None:
    cache = EmbeddingCache(max_bytes=5 * ENTRY_SIZE + ENTRY_SIZE // 2)
    for i in range(50):
        cache.put(i.to_bytes(16, "big"), entry(float(i)))
        assert cache.bytes <= cache.max_bytes
        assert cache.bytes == len(cache) * ENTRY_SIZE
    assert len(cache) == 5
    assert [i for i in range(50) if i.to_bytes(16, "big") in cache] == [45, 46, 47, 48, 49]


def test_replacing_a_key_keeps_the_byte_count_exact() -> None:
    cache = EmbeddingCache(max_bytes=10 * ENTRY_SIZE)
    cache.put(b"k", entry(1.0))
    cache.put(b"k", CachedEmbedding(np.zeros(2 * DIM, dtype=np.float32).tobytes(), 1, False))
    assert (len(cache), cache.bytes) == (1, 2 * DIM * 4 + ENTRY_OVERHEAD_BYTES)


def test_an_entry_larger_than_the_bound_is_not_stored() -> None:
    cache = EmbeddingCache(max_bytes=ENTRY_SIZE - 1)
    cache.put(b"k", entry(1.0))
    assert (len(cache), cache.bytes) == (0, 0)


def test_zero_bytes_disables_the_cache() -> None:
    cache = EmbeddingCache(max_bytes=0)
    assert not cache.enabled
    cache.put(b"k", entry(1.0))
    assert cache.get(b"k") is None
    assert (len(cache), cache.bytes, cache.hits, cache.misses) == (0, 0, 0, 0)


def test_negative_bound_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        EmbeddingCache(max_bytes=-1)


async def test_cached_vectors_are_bit_identical_to_a_fresh_onnx_embedding(
    default_onnx_backend: OnnxBackend,
) -> None:
    texts = VARIED[:6]
    fresh = [await default_onnx_backend.embed([text]) for text in texts]
    cache = EmbeddingCache(max_bytes=1024 * 1024)
    embedder = Embedder(
        default_onnx_backend,
        Limits(max_texts_per_request=16, max_chars_per_text=1000),
        owns_backend=False,
        policy=BatchPolicy(wait_seconds=0),
        cache=cache,
    )
    await embedder.start()
    try:
        computed = [await embedder.embed([text]) for text in texts]  # one at a time, as ``fresh``
        assert (cache.hits, len(cache)) == (0, len(texts))
        again = await embedder.embed(texts)  # all six from the cache, in one request
        assert cache.hits == len(texts)
    finally:
        await embedder.stop()
    for i, (expected, first) in enumerate(zip(fresh, computed, strict=True)):
        assert first.vectors.tobytes() == expected.vectors.tobytes()
        assert again.vectors[i].tobytes() == expected.vectors[0].tobytes()
        assert again.token_counts[i] == expected.token_counts[0]
        assert again.truncated[i] == expected.truncated[0]
    assert again.vectors.dtype == np.float32
