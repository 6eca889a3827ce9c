"""Builds the embedding service for the shared bootstrap: servicer, model load on start, health info."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from briefxai.embedding.v1 import embedding_pb2_grpc
from briefxai_common.bootstrap import Service
from briefxai_common.health import HealthReport
from briefxai_embedding.backends import EmbeddingBackend, backend_breakers, create_backend
from briefxai_embedding.batching import BatchPolicy
from briefxai_embedding.cache import EmbeddingCache
from briefxai_embedding.embedder import Embedder, Limits
from briefxai_embedding.servicer import SERVICE_NAME, EmbeddingServicer
from briefxai_embedding.settings import EmbeddingSettings


def build_service(settings: EmbeddingSettings, backend: EmbeddingBackend | None = None) -> Service:
    """The embedding service; its model loads in ``start`` (health stays NOT_SERVING until then).

    ``backend`` overrides the one ``settings.backend`` names; the caller then owns it (the service loads
    it if needed but never closes it), which lets tests share one loaded model between servers.
    Raises ConfigError when the backend's configuration cannot work (for example a missing API key).
    """
    embedder = Embedder(
        backend if backend is not None else create_backend(settings),
        Limits(
            max_texts_per_request=settings.max_texts_per_request,
            max_chars_per_text=settings.max_chars_per_text,
        ),
        owns_backend=backend is None,
        policy=BatchPolicy(
            max_batch_texts=settings.max_batch_texts,
            wait_seconds=settings.batch_wait_ms / 1000.0,
            # A local model uses every core in one call; a remote API's latency is worth overlapping.
            max_concurrent_batches=(
                settings.openai.max_concurrent_requests if settings.backend == "openai" else 1
            ),
        ),
        cache=EmbeddingCache(max_bytes=settings.cache_max_mb * 1024 * 1024),
    )
    servicer = EmbeddingServicer(embedder)

    def register(server: grpc.aio.Server) -> Sequence[str]:
        embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    breakers = backend_breakers(embedder.backend)

    def health_info() -> HealthReport:
        """Unhealthy until the model is loaded; degraded while the remote endpoint's breaker is not closed."""
        info = embedder.info()
        return HealthReport(
            not_ready=[] if embedder.ready else ["model not loaded"],
            circuit_breakers={name: b.state.label for name, b in breakers.items()} or None,
            details={
                "model": info.model,
                "backend": info.backend,
                "dim": info.dim,
                "model_ready": embedder.ready,
            },
        )

    return Service(
        name="embedding",
        settings=settings,
        register=register,
        start=embedder.start,
        stop=embedder.stop,
        health_info=health_info,
        internal=True,
    )
