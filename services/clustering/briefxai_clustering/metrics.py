"""Prometheus metrics of the clustering work itself (the gRPC call metrics come from the bootstrap)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

STAGE_SECONDS = Histogram(
    "briefxai_clustering_stage_seconds",
    "Wall time of one pipeline stage of one request.",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80),
)
VECTORS = Counter("briefxai_clustering_vectors_total", "Vectors clustered.")
WITHHELD = Counter("briefxai_clustering_withheld_total", "Conversations withheld by the privacy thresholds.")
RUNNING = Gauge("briefxai_clustering_jobs_running", "Clustering jobs computing now.")
WAITING = Gauge("briefxai_clustering_jobs_waiting", "Clustering jobs waiting for a slot.")
REJECTED = Counter(
    "briefxai_clustering_jobs_rejected_total", "Requests refused with RESOURCE_EXHAUSTED (queue full)."
)
