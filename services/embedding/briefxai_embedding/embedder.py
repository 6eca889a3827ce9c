"""The embedding service's domain: request limits, then the micro-batcher and backend; no gRPC here.

Empty strings are allowed and embedded like any other text (the local model sees only its [CLS]/[SEP]
markers); an empty *request* is rejected.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from briefxai_common.errors import InvalidArgument, ServiceError, Unavailable
from briefxai_embedding import metrics
from briefxai_embedding.backends import EmbeddingBackend, EmbedResult
from briefxai_embedding.batching import BatchPolicy, MicroBatcher
from briefxai_embedding.cache import EmbeddingCache
from briefxai_embedding.token_cut import TokenCutter

MAX_REPORTED_VIOLATIONS = 10


@dataclass(frozen=True)
class Limits:
    max_texts_per_request: int
    max_chars_per_text: int


@dataclass(frozen=True)
class ModelInfo:
    model: str
    backend: str
    dim: int
    max_tokens: int
    normalized: bool
    max_texts_per_request: int
    max_chars_per_text: int


def validate_texts(texts: Sequence[str], limits: Limits, where: str = "") -> None:
    """Raises InvalidArgument for an empty batch, too many texts, or texts over the character limit.

    Field paths are ``texts`` and ``texts[i]``; ``where`` (for example "stream chunk 3 (offset 4096)")
    prefixes each description. At most 10 over-long texts are listed.
    """
    prefix = f"{where}: " if where else ""
    if not texts:
        raise InvalidArgument("texts", f"{prefix}at least one text is required")
    if len(texts) > limits.max_texts_per_request:
        raise InvalidArgument(
            "texts",
            f"{prefix}at most {limits.max_texts_per_request} texts per request "
            f"(max_texts_per_request), got {len(texts)}",
        )
    too_long = [
        (
            f"texts[{i}]",
            f"{prefix}at most {limits.max_chars_per_text} characters (max_chars_per_text), got {n}",
        )
        for i, n in ((i, len(text)) for i, text in enumerate(texts))
        if n > limits.max_chars_per_text
    ]
    if too_long:
        raise InvalidArgument.many(too_long[:MAX_REPORTED_VIOLATIONS])


class Embedder:
    """Validates a batch against the limits and embeds it through the micro-batcher and cache.

    Without ``policy`` the defaults of :class:`BatchPolicy` apply; without ``cache`` nothing is cached.
    """

    def __init__(
        self,
        backend: EmbeddingBackend,
        limits: Limits,
        *,
        owns_backend: bool = True,
        policy: BatchPolicy | None = None,
        cache: EmbeddingCache | None = None,
    ) -> None:
        self.backend = backend
        self.limits = limits
        self.owns_backend = owns_backend  # False: the caller loads and closes a shared backend
        self.batcher = MicroBatcher(backend, policy, cache)
        self.cutter = TokenCutter()  # characters per token until start() loads the model's tokenizer
        self.ready = False

    async def start(self) -> None:
        await self.backend.load()
        if self.backend.tokenizer_file is not None:
            self.cutter = await asyncio.to_thread(TokenCutter.from_file, self.backend.tokenizer_file)
        self.batcher.start()
        self.ready = True

    async def stop(self) -> None:
        """Fails callers still queued with Unavailable, then closes the backend if it is ours."""
        self.ready = False
        await self.batcher.stop()
        if self.owns_backend:
            await self.backend.close()

    def clear_cache(self) -> int:
        """Drops every cached vector (a user's data was erased upstream); returns how many there were."""
        cache = self.batcher.cache
        cleared = len(cache)
        cache.clear()
        metrics.CACHE_ENTRIES.labels(self.backend.backend).set(0)
        metrics.CACHE_BYTES.labels(self.backend.backend).set(0)
        return cleared

    def info(self) -> ModelInfo:
        return ModelInfo(
            model=self.backend.model,
            backend=self.backend.backend,
            dim=self.backend.dim,
            max_tokens=self.backend.max_tokens,
            normalized=self.backend.normalized,
            max_texts_per_request=self.limits.max_texts_per_request,
            max_chars_per_text=self.limits.max_chars_per_text,
        )

    async def embed(
        self, texts: Sequence[str], where: str = "", max_tokens: int = 0, model: str = ""
    ) -> EmbedResult:
        """Vectors of ``texts``, each cut after ``max_tokens`` model tokens first (0: the model's own
        limit), all from ``model`` ("" = the backend's current one; the result names it). Raises
        InvalidArgument for a batch over the limits, Unavailable while the model loads, ModelPinned when
        ``model`` cannot embed them now."""
        validate_texts(texts, self.limits, where)
        if not self.ready:
            raise Unavailable("the embedding model is still loading; retry shortly", reason="MODEL_LOADING")
        backend = self.backend.backend
        started = time.perf_counter()
        cut_flags: list[bool] = []
        if max_tokens > 0:
            texts, cut_flags = await asyncio.to_thread(self.cutter.cut, texts, max_tokens)
        try:
            result = await self.batcher.embed(texts, model)
        except ServiceError as error:
            metrics.FAILURES.labels(backend, error.code_name).inc()
            raise
        if any(cut_flags):
            result = EmbedResult(
                vectors=result.vectors,
                token_counts=result.token_counts,
                truncated=[a or b for a, b in zip(result.truncated, cut_flags, strict=True)],
                model=result.model,
            )
        metrics.DURATION.labels(backend).observe(time.perf_counter() - started)
        metrics.TEXTS.labels(backend).inc(len(result))
        return result
