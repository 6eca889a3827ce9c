"""Prometheus metrics of the embedding work itself (the gRPC call metrics come from the bootstrap)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

TEXTS = Counter("briefxai_embedding_texts_total", "Texts embedded.", ["backend"])
TOKENS = Counter("briefxai_embedding_tokens_total", "Tokens the model saw (0 where unknown).", ["backend"])
TRUNCATED = Counter(
    "briefxai_embedding_truncated_texts_total", "Texts cut at the model's max_tokens.", ["backend"]
)
FAILURES = Counter(
    "briefxai_embedding_failures_total", "Embed calls the backend failed.", ["backend", "code"]
)
DURATION = Histogram(
    "briefxai_embedding_duration_seconds",
    "Time to embed one request or stream chunk, validation excluded.",
    ["backend"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
