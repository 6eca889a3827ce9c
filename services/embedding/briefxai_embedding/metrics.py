"""Prometheus metrics of the embedding work itself (the gRPC call metrics come from the bootstrap)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TEXTS = Counter("briefxai_embedding_texts_total", "Texts requested (cache hits included).", ["backend"])
TOKENS = Counter(
    "briefxai_embedding_tokens_total",
    "Tokens the model saw (0 where unknown); cache hits and duplicates excluded.",
    ["backend"],
)
TRUNCATED = Counter(
    "briefxai_embedding_truncated_texts_total",
    "Texts the model computed that were cut at its max_tokens.",
    ["backend"],
)
FAILURES = Counter("briefxai_embedding_failures_total", "Requests the backend failed.", ["backend", "code"])
DURATION = Histogram(
    "briefxai_embedding_duration_seconds",
    "Time to embed one request or stream chunk, queueing included, validation excluded.",
    ["backend"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

CACHE_HITS = Counter("briefxai_embedding_cache_hits_total", "Texts answered from the cache.", ["backend"])
CACHE_MISSES = Counter(
    "briefxai_embedding_cache_misses_total", "Texts not found in the cache (cache enabled).", ["backend"]
)
CACHE_ENTRIES = Gauge("briefxai_embedding_cache_entries", "Vectors held in the cache.", ["backend"])
CACHE_BYTES = Gauge(
    "briefxai_embedding_cache_bytes", "Bytes the cache counts against cache_max_mb.", ["backend"]
)
DEDUPLICATED = Counter(
    "briefxai_embedding_deduplicated_texts_total",
    "Texts not sent to the backend because an identical one was in the same merged batch.",
    ["backend"],
)
BACKEND_BATCH_TEXTS = Histogram(
    "briefxai_embedding_backend_batch_texts",
    "Texts per backend embed call (unique, uncached).",
    ["backend"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
)
BACKEND_BATCH_REQUESTS = Histogram(
    "briefxai_embedding_backend_batch_requests",
    "Requests merged into one backend embed call.",
    ["backend"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
