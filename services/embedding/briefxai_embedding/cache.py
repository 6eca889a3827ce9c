"""A content-hash LRU cache of embeddings, bounded by memory; no gRPC here.

The key is a 16-byte BLAKE2b digest of the text's UTF-8 bytes, so the cache never holds the texts
themselves. Values keep the vector as float32 bytes: a vector read back is bit-identical to the one the
backend returned. All access happens on the event loop (no thread touches it), so it needs no lock.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

# Key, entry object, vector bytes header and OrderedDict slot; tracemalloc over 10k entries: ~213 bytes.
ENTRY_OVERHEAD_BYTES = 216


def text_key(text: str, model: str = "") -> bytes:
    """The cache key of ``text`` (embedded by ``model``): the 16-byte BLAKE2b digest of its UTF-8 bytes,
    preceded by the model's name and a NUL when one is given, so that a service that serves two models
    (a remote one and its local fallback) never answers one's request with the other's vector."""
    digest = hashlib.blake2b(digest_size=16)
    if model:
        digest.update(model.encode("utf-8") + b"\0")
    digest.update(text.encode("utf-8"))
    return digest.digest()


@dataclass(frozen=True, slots=True)
class CachedEmbedding:
    """One text's row: ``vector`` is the float32 vector's raw bytes (native byte order)."""

    vector: bytes
    token_count: int
    truncated: bool

    @property
    def size(self) -> int:
        """Bytes this entry counts for against the cache's bound."""
        return len(self.vector) + ENTRY_OVERHEAD_BYTES


class EmbeddingCache:
    """Least recently used entries are evicted first once the entries' bytes exceed ``max_bytes``.

    ``max_bytes`` 0 disables the cache: nothing is stored, every ``get`` misses and nothing is counted.
    """

    # An OrderedDict and not a library: cachetools is not a dependency and the policy is a few lines.
    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self._entries: OrderedDict[bytes, CachedEmbedding] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def peek(self, key: bytes) -> CachedEmbedding | None:
        """The entry for ``key`` without counting a hit or miss or refreshing its recency."""
        return self._entries.get(key)

    def get(self, key: bytes) -> CachedEmbedding | None:
        """The entry for ``key``, now the most recently used; counts a hit or a miss."""
        if not self.enabled:
            return None
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def put(self, key: bytes, entry: CachedEmbedding) -> None:
        """Stores ``entry`` as the most recently used, then evicts the least recently used over the bound.

        An entry larger than the whole bound is not stored.
        """
        if entry.size > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        self._entries[key] = entry
        self.bytes += entry.size
        while self.bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= evicted.size
            self.evictions += 1

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0
