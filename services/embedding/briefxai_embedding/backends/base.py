"""The one interface every embedding backend implements, what ``embed`` returns, and the refusal of a
batch pinned to a model the service cannot serve (:class:`ModelPinned`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from briefxai_common.errors import FailedPrecondition, RetryableError

#: google.rpc.ErrorInfo reason of :class:`ModelPinned` (the gateway retries it later).
MODEL_PINNED = "EMBEDDING_MODEL_PINNED"


@dataclass(frozen=True)
class EmbedResult:
    """Vectors for ``n`` texts, in input order.

    - ``vectors``: float32 array of shape ``(n, dim)``.
    - ``token_counts``: tokens the model saw per text (after truncation); 0 where the backend cannot tell.
    - ``truncated``: True where the text was cut (at the model's ``max_tokens``, or at the caller's).
    - ``model``: the model that made the vectors when a backend may serve more than one (the failover
      backend); "" = the backend's ``model``.
    """

    vectors: npt.NDArray[np.float32]
    token_counts: list[int]
    truncated: list[bool]
    model: str = ""

    def __post_init__(self) -> None:
        n = len(self.token_counts)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != n or len(self.truncated) != n:
            raise ValueError(
                f"inconsistent EmbedResult: vectors {self.vectors.shape}, "
                f"{n} token counts, {len(self.truncated)} truncated flags"
            )

    def __len__(self) -> int:
        return len(self.token_counts)


@runtime_checkable
class EmbeddingBackend(Protocol):
    """Turns texts into vectors. ``load`` runs once before the first ``embed``; ``close`` once at the end.

    Attributes describe the model for GetModelInfo: ``model`` (for example
    "sentence-transformers/all-MiniLM-L6-v2"), ``backend`` ("sentence-transformers", "onnx", "openai"),
    ``dim`` (0 until known), ``max_tokens`` (0 when unknown) and ``normalized`` (vectors have unit length).
    ``tokenizer_file`` is the model's ``tokenizer.json`` on this machine (None for a remote model), so that
    texts can be cut by the model's own tokens.

    ``embed`` raises ``briefxai_common.errors.Unavailable`` for retryable faults of a dependency and
    ``FailedPrecondition`` when the backend is misconfigured or not loaded.
    """

    @property
    def model(self) -> str: ...

    @property
    def backend(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    @property
    def normalized(self) -> bool: ...

    @property
    def tokenizer_file(self) -> Path | None: ...

    async def load(self) -> None: ...

    async def embed(self, texts: Sequence[str]) -> EmbedResult: ...

    async def close(self) -> None: ...


@runtime_checkable
class MultiModelBackend(EmbeddingBackend, Protocol):
    """A backend that serves more than one model (the failover backend): ``embed`` takes the model."""

    @property
    def models(self) -> tuple[str, ...]: ...

    async def embed(self, texts: Sequence[str], model: str = "") -> EmbedResult: ...


class ModelPinned(FailedPrecondition, RetryableError):
    """A batch pinned to ``pinned`` (the model of its analysis) that the service would answer with
    ``serving``: FAILED_PRECONDITION with ``ErrorInfo`` reason ``EMBEDDING_MODEL_PINNED`` (both models in
    its metadata) and, when known, ``RetryInfo``: retry later, never a silent change of embedding space."""

    def __init__(
        self, message: str, *, pinned: str, serving: str, retry_after_seconds: float | None = None
    ) -> None:
        RetryableError.__init__(
            self,
            message,
            reason=MODEL_PINNED,
            retry_after_seconds=retry_after_seconds,
            metadata={"pinned_model": pinned, "serving_model": serving},
        )
        self.pinned = pinned
        self.serving = serving


def l2_normalize(vectors: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Rows scaled to unit length, as float32; all-zero rows stay zero.

    Rows are first divided by their largest magnitude, so tiny or huge values neither underflow nor
    overflow when squared.
    """
    array = np.asarray(vectors, dtype=np.float64)
    scale = np.max(np.abs(array), axis=1, keepdims=True) if array.size else np.ones((len(array), 1))
    scale[scale == 0.0] = 1.0
    array = array / scale
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0.0] = 1.0
    return (array / norms).astype(np.float32)


async def embed_with_model(backend: EmbeddingBackend, texts: Sequence[str], model: str = "") -> EmbedResult:
    """``texts`` embedded by ``model`` ("" = the backend's current model), the result naming it: a
    :class:`MultiModelBackend` is asked for that model; any other backend refuses a model it is not."""
    if isinstance(backend, MultiModelBackend):
        return await backend.embed(texts, model)
    if model and model != backend.model:
        raise ModelPinned(
            f"the batch is pinned to embedding model {model!r}; this service embeds with {backend.model!r}",
            pinned=model,
            serving=backend.model,
        )
    return replace(await backend.embed(texts), model=backend.model)
