"""Job slots: bounded running and waiting jobs; a cancelled caller does not free a busy slot."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable

import pytest

from briefxai_clustering.jobs import JobSlots
from briefxai_common.errors import ResourceExhausted


async def eventually(condition: Callable[[], bool]) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached within 20 s")


async def test_jobs_run_in_threads_and_return_results() -> None:
    slots = JobSlots(max_running=1, max_waiting=2)
    results = await asyncio.gather(*(slots.run(functools.partial(pow, i, 2)) for i in range(3)))
    assert results == [0, 1, 4]
    assert (slots.running, slots.waiting) == (0, 0)


async def test_full_queue_is_refused() -> None:
    slots = JobSlots(max_running=1, max_waiting=1)
    gate = threading.Event()
    first = asyncio.create_task(slots.run(gate.wait))
    second = asyncio.create_task(slots.run(lambda: "second"))
    await eventually(lambda: slots.running == 1 and slots.waiting == 1)
    with pytest.raises(ResourceExhausted):
        await slots.run(lambda: "third")
    gate.set()
    assert await first is True
    assert await second == "second"


async def test_cancelled_caller_keeps_the_slot_until_the_thread_ends() -> None:
    slots = JobSlots(max_running=1, max_waiting=0)
    gate = threading.Event()
    job = asyncio.create_task(slots.run(gate.wait))
    await eventually(lambda: slots.running == 1)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert slots.running == 1
    with pytest.raises(ResourceExhausted):
        await slots.run(lambda: None)
    gate.set()
    await eventually(lambda: slots.running == 0)
    assert await slots.run(lambda: "free again") == "free again"


async def test_errors_reach_the_caller() -> None:
    slots = JobSlots(max_running=1, max_waiting=0)

    def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await slots.run(fail)
    assert slots.running == 0
