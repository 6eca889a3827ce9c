"""Bounded concurrency for CPU-heavy jobs: at most N running (in worker threads), M waiting, the rest
refused with RESOURCE_EXHAUSTED, so memory stays bounded and the event loop (health, metrics) stays free.
A job whose caller gave up keeps its slot until its thread finishes."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import Any, TypeVar

from briefxai_clustering import metrics
from briefxai_common.errors import ResourceExhausted

T = TypeVar("T")


class JobSlots:
    def __init__(self, max_running: int, max_waiting: int) -> None:
        if max_running < 1 or max_waiting < 0:
            raise ValueError("need max_running >= 1 and max_waiting >= 0")
        self.max_running = max_running
        self.max_waiting = max_waiting
        self._slots = asyncio.Semaphore(max_running)
        self.running = 0
        self.waiting = 0

    def check_capacity(self) -> None:
        """ResourceExhausted when every slot is taken and the queue is full (a job now would be refused)."""
        if self.running >= self.max_running and self.waiting >= self.max_waiting:
            metrics.REJECTED.inc()
            raise ResourceExhausted(
                f"clustering is busy: {self.running} jobs running and {self.waiting} waiting; retry later",
                reason="CLUSTERING_QUEUE_FULL",
                retry_after_seconds=5.0,
                metadata={"running": str(self.running), "waiting": str(self.waiting)},
            )

    async def run(self, work: Callable[[], T]) -> T:
        """Runs ``work`` in a worker thread once a slot is free; ResourceExhausted when the queue is full."""
        self.check_capacity()
        self.waiting += 1
        metrics.WAITING.inc()
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
            metrics.WAITING.dec()
        self.running += 1
        metrics.RUNNING.inc()
        context = contextvars.copy_context()
        future = asyncio.get_running_loop().run_in_executor(None, context.run, work)
        future.add_done_callback(self._finished)
        # A cancelled caller (deadline, client gone) stops waiting, but the slot stays taken until the
        # thread is done: a thread cannot be interrupted, and its CPU is still in use.
        return await asyncio.shield(future)

    def _finished(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled():
            future.exception()  # retrieved here, so an abandoned job's error is not reported as unhandled
        self.running -= 1
        metrics.RUNNING.dec()
        self._slots.release()
