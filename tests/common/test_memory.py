"""release_free_memory: freed heap pages really leave the process (glibc's malloc_trim)."""

from __future__ import annotations

import numpy as np
import psutil
import pytest

from briefxai_common import memory


@pytest.mark.skipif(memory._malloc_trim() is None, reason="the C library has no malloc_trim")
def test_freed_small_allocations_go_back_to_the_os() -> None:
    process = psutil.Process()
    before = process.memory_info().rss
    # 200k arrays of 4 KiB: below malloc's mmap threshold, so they live on the heap and stay when freed.
    blocks = [np.ones(512) for _ in range(200_000)]
    grown = process.memory_info().rss
    assert grown - before > 500 * 2**20
    del blocks
    memory.release_free_memory()
    released = process.memory_info().rss
    assert grown - released > 400 * 2**20, f"RSS {grown >> 20} MiB -> {released >> 20} MiB"
