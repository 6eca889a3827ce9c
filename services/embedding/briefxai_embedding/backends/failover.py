"""A remote embedding backend with a local fallback, that never mixes two embedding spaces in one batch.

``embedding.backend: openai`` with ``embedding.fallback: onnx`` (or ``torch``): the OpenAI-compatible
endpoint embeds while its circuit breaker is closed or half-open; while the breaker is open (the endpoint
failed ``failure_threshold`` times in a row and has not answered a trial or a probe since) the local
model does. Every batch is embedded by one model, known before it is computed, and the result names it
(:attr:`EmbedResult.model`):

- a batch pinned to a model (``EmbedTextsRequest.model``: the gateway pins an analysis to the model of
  its first batch) is embedded by that model or refused: pinned to the remote model while the endpoint is
  unavailable, or to a model this service does not have, it is refused with
  :class:`~briefxai_embedding.backends.base.ModelPinned` (FAILED_PRECONDITION naming both models,
  retry later), never answered from the other embedding space;
- a batch not pinned gets the current model (:attr:`model`, what GetModelInfo says): the remote one, or
  the local one while the remote breaker is open; a remote failure before the breaker opens is
  UNAVAILABLE, retried by the caller.

Batches the local model embeds while the remote breaker is open are counted as failovers:
``briefxai_failovers_total{service="embedding",from="openai",to=<local backend>,outcome}``.

:attr:`model`, :attr:`backend` and :attr:`dim` describe the current model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from briefxai_common import service_metrics
from briefxai_common.errors import Unavailable
from briefxai_common.resilience import CircuitState
from briefxai_embedding.backends.base import EmbeddingBackend, EmbedResult, ModelPinned
from briefxai_embedding.backends.openai import OpenAIBackend

SERVICE = "embedding"


class FailoverBackend:
    """:class:`OpenAIBackend` first, a local backend while it is unavailable; see the module docstring."""

    normalized = True
    tokenizer_file: Path | None = None  # texts are cut by characters: the two models' tokens differ

    def __init__(self, primary: OpenAIBackend, fallback: EmbeddingBackend) -> None:
        self.primary = primary
        self.fallback = fallback
        service_metrics.declare_failovers(SERVICE, [primary.backend, fallback.backend])

    @property
    def _current(self) -> EmbeddingBackend:
        return self.fallback if self.primary.breaker.state is CircuitState.OPEN else self.primary

    @property
    def model(self) -> str:
        return self._current.model

    @property
    def backend(self) -> str:
        return self._current.backend

    @property
    def dim(self) -> int:
        return self._current.dim

    @property
    def max_tokens(self) -> int:
        return self._current.max_tokens

    @property
    def models(self) -> tuple[str, str]:
        return self.primary.model, self.fallback.model

    async def load(self) -> None:
        await self.fallback.load()
        await self.primary.load()

    async def close(self) -> None:
        await self.primary.close()
        await self.fallback.close()

    async def embed(self, texts: Sequence[str], model: str = "") -> EmbedResult:
        """Vectors of ``texts`` from ``model`` ("" = the current model); raises :class:`ModelPinned` when
        a given ``model`` cannot embed them now, Unavailable when the current one fails."""
        primary, fallback = self.primary, self.fallback
        if model and model not in self.models:
            raise ModelPinned(
                f"the batch is for embedding model {model!r}; this service embeds with "
                f"{primary.model!r} (falling back to {fallback.model!r})",
                pinned=model,
                serving=self.model,
            )
        if (model or self.model) == fallback.model and fallback.model != primary.model:
            return await self._from_fallback(texts)
        try:
            return replace(await primary.embed(texts), model=primary.model)
        except Unavailable as error:
            if not model:
                raise
            raise ModelPinned(
                f"the batch is for embedding model {model!r}, which is unavailable ({error}); it is not "
                f"embedded with the fallback {fallback.model!r} instead: retry later",
                pinned=model,
                serving=fallback.model,
                retry_after_seconds=error.retry_after_seconds,
            ) from error

    async def _from_fallback(self, texts: Sequence[str]) -> EmbedResult:
        """The local model's vectors; counted as a failover while the remote breaker is open."""
        failover = self.primary.breaker.state is CircuitState.OPEN
        source, target = self.primary.backend, self.fallback.backend
        try:
            result = replace(await self.fallback.embed(texts), model=self.fallback.model)
        except Exception:
            if failover:
                service_metrics.count_failover(SERVICE, source, target, "failed")
            raise
        if failover:
            service_metrics.count_failover(SERVICE, source, target, "ok")
        return result
