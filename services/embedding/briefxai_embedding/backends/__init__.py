"""Embedding backends behind one interface (:class:`EmbeddingBackend`); ``create_backend`` picks one.

A new backend is one new module here plus one branch in ``create_backend``.
"""

from __future__ import annotations

from briefxai_embedding.backends.base import EmbeddingBackend, EmbedResult, l2_normalize
from briefxai_embedding.settings import EmbeddingSettings

__all__ = ["EmbedResult", "EmbeddingBackend", "create_backend", "l2_normalize"]


def create_backend(settings: EmbeddingSettings) -> EmbeddingBackend:
    """The backend ``settings.backend`` names, configured but not loaded (``await backend.load()``).

    Raises ConfigError when the configuration cannot work (for example a missing API key).
    """
    if settings.backend == "torch":
        from briefxai_embedding.backends.sentence_transformers import SentenceTransformersBackend

        return SentenceTransformersBackend(
            batch_size=settings.batch_size, torch_threads=settings.resolved_torch_threads()
        )
    if settings.backend == "onnx":
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
    if settings.backend == "openai":
        from briefxai_embedding.backends.openai import OpenAIBackend, resolve_api_key

        return OpenAIBackend(settings.openai, resolve_api_key(settings.openai))
    raise ValueError(f"unknown embedding backend {settings.backend!r}")
