"""Dynamic micro-batching with in-batch dedupe and the content-hash cache in front of a backend; no gRPC.

Concurrent requests queue up; one dispatcher task merges them in FIFO order into one ``backend.embed``
call of at most ``max_batch_texts`` unique, uncached texts (a single larger request goes alone, whole),
waiting up to ``wait_seconds`` after the oldest queued request for more to arrive. Each caller gets its
own rows in its input order. A request whose texts are all cached is answered at once, without queueing.
At most ``max_concurrent_batches`` backend calls run at once: 1 for a local model (it already uses every
core in one call), more for a remote API whose latency is worth overlapping.

Everything runs on the event loop; the backend does its CPU work elsewhere (its own executor).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from briefxai_common.errors import Unavailable
from briefxai_common.logging import get_logger
from briefxai_embedding import metrics
from briefxai_embedding.backends import EmbeddingBackend, EmbedResult, embed_with_model
from briefxai_embedding.cache import CachedEmbedding, EmbeddingCache, text_key

log = get_logger(__name__)

# Where a caller's row comes from: a cache entry, or an index into the backend call's unique texts.
Slot = CachedEmbedding | int


@dataclass(frozen=True)
class BatchPolicy:
    """``max_batch_texts``: unique uncached texts per backend call; ``wait_seconds``: 0 = never wait;
    ``max_concurrent_batches``: backend calls in flight at once."""

    max_batch_texts: int = 256
    wait_seconds: float = 0.002
    max_concurrent_batches: int = 1

    def __post_init__(self) -> None:
        if self.max_batch_texts < 1 or self.wait_seconds < 0 or self.max_concurrent_batches < 1:
            raise ValueError(
                f"max_batch_texts and max_concurrent_batches must be >= 1 and wait_seconds >= 0, got "
                f"{self.max_batch_texts}, {self.max_concurrent_batches}, {self.wait_seconds}"
            )


@dataclass(eq=False)
class _Request:
    texts: list[str]
    keys: list[bytes]
    future: asyncio.Future[EmbedResult]
    arrived: float  # loop time
    model: str  # the model that embeds it: the one it is pinned to, else the backend's current one


class MicroBatcher:
    """Merges concurrent ``embed`` calls into few backend calls; ``start`` and ``stop`` run its dispatcher."""

    def __init__(
        self,
        backend: EmbeddingBackend,
        policy: BatchPolicy | None = None,
        cache: EmbeddingCache | None = None,
    ) -> None:
        self.backend = backend
        self.policy = policy if policy is not None else BatchPolicy()
        self.cache = cache if cache is not None else EmbeddingCache(0)
        self._queue: deque[_Request] = deque()
        self._batch: list[_Request] = []  # being gathered from the queue
        self._in_flight: dict[asyncio.Task[None], list[_Request]] = {}  # batches the backend is computing
        self._slots: asyncio.Semaphore | None = None
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Starts the dispatcher on the running event loop (once)."""
        if self._task is None:
            self._arrived = asyncio.Event()
            self._slots = asyncio.Semaphore(self.policy.max_concurrent_batches)
            self._task = asyncio.get_running_loop().create_task(self._dispatch(), name="embedding-batcher")
            self._task.add_done_callback(self._dispatcher_done)

    async def stop(self) -> None:
        """Stops the dispatcher; callers still waiting fail with Unavailable."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        in_flight = dict(self._in_flight)
        for batch_task in in_flight:
            batch_task.cancel()
        if in_flight:
            await asyncio.wait(in_flight)
        self._fail_waiting(
            "the embedding service is shutting down", [r for b in in_flight.values() for r in b]
        )

    def _dispatcher_done(self, task: asyncio.Task[None]) -> None:
        """A dispatcher that died of a bug must not leave its callers waiting forever."""
        if task.cancelled() or task.exception() is None:
            return
        log.error("embedding_batcher_failed", error=repr(task.exception()))
        self._fail_waiting("the embedding batcher failed; retry")

    def _fail_waiting(self, message: str, also: Sequence[_Request] = ()) -> None:
        waiting = [*also, *self._batch, *self._queue]
        for batch in self._in_flight.values():
            waiting.extend(batch)
        self._batch = []
        self._queue.clear()
        for request in waiting:
            if not request.future.done():
                request.future.set_exception(Unavailable(message))

    async def embed(self, texts: Sequence[str], model: str = "") -> EmbedResult:
        """Rows for ``texts`` in input order, from the cache or from a merged backend call, all from
        ``model`` ("" = the backend's current model), which the result names.

        Raises Unavailable when the dispatcher is not running, and whatever the backend raised for the
        batch this request was merged into (ModelPinned when ``model`` cannot embed it now).
        """
        texts = list(texts)
        model = model or self.backend.model
        if not texts:
            return EmbedResult(np.zeros((0, self.backend.dim), dtype=np.float32), [], [], model)
        keys = [text_key(text, model) for text in texts]
        if self.cache.enabled and all(self.cache.peek(key) is not None for key in keys):
            entries: list[Slot] = [entry for entry in map(self.cache.get, keys) if entry is not None]
            metrics.CACHE_HITS.labels(self.backend.backend).inc(len(entries))
            return _assemble(entries, None, model)
        if not self.running or self._arrived is None:
            raise Unavailable("the embedding service is not running", reason="SHUTTING_DOWN")
        loop = asyncio.get_running_loop()
        request = _Request(texts, keys, loop.create_future(), loop.time(), model)
        self._queue.append(request)
        self._arrived.set()
        # A caller cancelled here (deadline, disconnect) cancels its future: the dispatcher skips it.
        return await request.future

    async def _dispatch(self) -> None:
        assert self._arrived is not None and self._slots is not None  # noqa: S101  invariant for mypy
        while True:
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            await self._slots.acquire()
            await self._gather()
            batch, self._batch = self._batch, []
            if not batch:
                self._slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._run(batch), name="embedding-batch")
            self._in_flight[task] = batch
            task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        if self._slots is not None:
            self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("embedding_batch_failed", error=repr(task.exception()))

    async def _gather(self) -> None:
        """Moves queued requests into ``self._batch`` (FIFO) until it is full or the wait budget is spent."""
        assert self._arrived is not None  # noqa: S101  invariant for mypy, not a check on input
        loop = asyncio.get_running_loop()
        limit = self.policy.max_batch_texts
        planned: set[bytes] = set()  # unique texts the backend will be asked for
        deadline: float | None = None
        while True:
            while self._queue:
                request = self._queue[0]
                if request.future.done():  # its caller gave up while it waited
                    self._queue.popleft()
                    continue
                new = {k for k in request.keys if k not in planned and self.cache.peek(k) is None}
                if self._batch and (request.model != self._batch[0].model or len(planned) + len(new) > limit):
                    return  # it leads the next batch (one model per batch)
                self._queue.popleft()
                self._batch.append(request)
                planned |= new
                if deadline is None:
                    deadline = request.arrived + self.policy.wait_seconds
            if deadline is None or len(planned) >= limit:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    async def _run(self, batch: list[_Request]) -> None:
        """One backend call for the batch's unique uncached texts; answers (or fails) each live caller."""
        live = [request for request in batch if not request.future.done()]
        if not live:
            return
        results: list[EmbedResult] | Exception
        try:
            results = await self._compute(live)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # stop(): the callers are failed there
            # The backend's own future was cancelled (for example its executor shut down).
            results = Unavailable("the embedding backend cancelled the batch")
        except Exception as error:  # any error at all fails this batch's callers, and only them
            results = error
        for index, request in enumerate(live):
            if request.future.done():  # cancelled while the batch ran: its rows are dropped
                continue
            if isinstance(results, BaseException):
                request.future.set_exception(results)
            else:
                request.future.set_result(results[index])

    async def _compute(self, live: list[_Request]) -> list[EmbedResult]:
        backend_name = self.backend.backend
        hits, misses = self.cache.hits, self.cache.misses
        unique: dict[bytes, int] = {}
        unique_texts: list[str] = []
        plans: list[list[Slot]] = []
        duplicates = 0
        needing_backend = 0
        for request in live:
            slots: list[Slot] = []
            for text, key in zip(request.texts, request.keys, strict=True):
                entry = self.cache.get(key)
                if entry is not None:
                    slots.append(entry)
                    continue
                index = unique.get(key)
                if index is None:
                    index = unique[key] = len(unique_texts)
                    unique_texts.append(text)
                else:
                    duplicates += 1
                slots.append(index)
            plans.append(slots)
            needing_backend += any(isinstance(slot, int) for slot in slots)
        metrics.CACHE_HITS.labels(backend_name).inc(self.cache.hits - hits)
        metrics.CACHE_MISSES.labels(backend_name).inc(self.cache.misses - misses)
        metrics.DEDUPLICATED.labels(backend_name).inc(duplicates)

        computed: EmbedResult | None = None
        if unique_texts:
            metrics.BACKEND_BATCH_TEXTS.labels(backend_name).observe(len(unique_texts))
            metrics.BACKEND_BATCH_REQUESTS.labels(backend_name).observe(needing_backend)
            computed = await embed_with_model(self.backend, unique_texts, live[0].model)
            if len(computed) != len(unique_texts):
                raise RuntimeError(f"the backend returned {len(computed)} rows for {len(unique_texts)} texts")
            metrics.TOKENS.labels(backend_name).inc(sum(computed.token_counts))
            metrics.TRUNCATED.labels(backend_name).inc(sum(computed.truncated))
            if self.cache.enabled:
                vectors = np.ascontiguousarray(computed.vectors, dtype=np.float32)
                for key, index in unique.items():
                    self.cache.put(
                        key,
                        CachedEmbedding(
                            vectors[index].tobytes(),
                            int(computed.token_counts[index]),
                            bool(computed.truncated[index]),
                        ),
                    )
                metrics.CACHE_ENTRIES.labels(backend_name).set(len(self.cache))
                metrics.CACHE_BYTES.labels(backend_name).set(self.cache.bytes)
        return [_assemble(slots, computed, live[0].model) for slots in plans]


def _assemble(slots: Sequence[Slot], computed: EmbedResult | None, model: str) -> EmbedResult:
    """One caller's EmbedResult: cached rows as stored (bit for bit), the others from ``computed``."""
    if computed is not None:
        dim = computed.vectors.shape[1]
    else:
        first = slots[0]
        assert isinstance(first, CachedEmbedding)  # noqa: S101  invariant for mypy, not a check on input
        dim = len(first.vector) // 4
    vectors = np.empty((len(slots), dim), dtype=np.float32)
    token_counts: list[int] = []
    truncated: list[bool] = []
    rows: list[int] = []
    indices: list[int] = []
    for row, slot in enumerate(slots):
        if isinstance(slot, CachedEmbedding):
            vectors[row] = np.frombuffer(slot.vector, dtype=np.float32)
            token_counts.append(slot.token_count)
            truncated.append(slot.truncated)
        else:
            assert computed is not None  # noqa: S101  invariant for mypy, not a check on input
            rows.append(row)
            indices.append(slot)
            token_counts.append(int(computed.token_counts[slot]))
            truncated.append(bool(computed.truncated[slot]))
    if rows:
        assert computed is not None  # noqa: S101  invariant for mypy, not a check on input
        vectors[rows] = computed.vectors[indices]
    return EmbedResult(vectors=vectors, token_counts=token_counts, truncated=truncated, model=model)
