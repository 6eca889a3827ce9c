"""Giving freed heap memory back to the operating system after a large request.

glibc keeps memory that Python, numpy or ONNX Runtime freed in its own free lists, so a service's
resident size stays at the high-water mark of its largest request even when idle. ``malloc_trim(0)``
returns the free pages of every malloc arena (a few milliseconds); there is no library for this one
call, hence ctypes. Elsewhere (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # no libc to load, or one without malloc_trim
        return None
    return trim


def release_free_memory() -> bool:
    """Returns freed heap pages to the OS; True when the C library could (glibc) and released some."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
