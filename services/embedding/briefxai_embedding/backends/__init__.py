"""Embedding backends behind one interface (:class:`EmbeddingBackend`); ``create_backend`` picks one.

A new backend is one new module here plus one branch in ``create_backend``.
"""

from __future__ import annotations

from briefxai_common.resilience import CircuitBreaker
from briefxai_embedding.backends.base import (
    MODEL_PINNED,
    EmbeddingBackend,
    EmbedResult,
    ModelPinned,
    MultiModelBackend,
    embed_with_model,
    l2_normalize,
)
from briefxai_embedding.settings import EmbeddingSettings

__all__ = [
    "MODEL_PINNED",
    "EmbedResult",
    "EmbeddingBackend",
    "ModelPinned",
    "MultiModelBackend",
    "backend_breakers",
    "create_backend",
    "embed_with_model",
    "l2_normalize",
]


def create_backend(settings: EmbeddingSettings) -> EmbeddingBackend:
    """The backend ``settings.backend`` names (behind a :class:`FailoverBackend` with the local
    ``settings.fallback`` when set), configured but not loaded (``await backend.load()``).

    Raises ConfigError when the configuration cannot work (for example a missing API key).
    """
    if settings.backend == "openai":
        from briefxai_embedding.backends.failover import FailoverBackend
        from briefxai_embedding.backends.openai import OpenAIBackend, resolve_api_key

        remote = OpenAIBackend(
            settings.openai,
            resolve_api_key(settings.openai),
            retry_policy=settings.retry_policies.embedding_remote.policy(),
            breaker=settings.circuit_breakers.embedding_remote,
            redact_external=settings.privacy.redact_external,
        )
        if settings.fallback == "none":
            return remote
        return FailoverBackend(remote, _local_backend(settings.fallback, settings))
    return _local_backend(settings.backend, settings)


def backend_breakers(backend: EmbeddingBackend) -> dict[str, CircuitBreaker]:
    """The circuit breakers of a backend (a remote endpoint's), by name, for /health."""
    remote = getattr(backend, "primary", backend)
    breaker = getattr(remote, "breaker", None)
    return {breaker.name: breaker} if isinstance(breaker, CircuitBreaker) else {}


def _local_backend(kind: str, settings: EmbeddingSettings) -> EmbeddingBackend:
    if kind == "torch":
        from briefxai_embedding.backends.sentence_transformers import SentenceTransformersBackend

        return SentenceTransformersBackend(
            batch_size=settings.batch_size, torch_threads=settings.resolved_torch_threads()
        )
    if kind == "onnx":
        from briefxai_embedding.backends.onnx import OnnxBackend

        return OnnxBackend(
            model_dir=settings.onnx_model_dir,
            precision=settings.onnx_precision,
            batch_size=settings.batch_size,
            batch_tokens=settings.batch_tokens,
            intra_op_threads=settings.resolved_torch_threads(),
            parallel_runs=settings.onnx_parallel_runs,
            memory_arena=settings.onnx_memory_arena,
        )
    raise ValueError(f"unknown embedding backend {kind!r}")
