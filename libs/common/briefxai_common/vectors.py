"""Vectors on the wire: row-major little-endian float32 bytes plus ``dim`` and ``count``.

This is the encoding of ``briefxai.common.v1.PackedVectors``; the embedding service packs, the gateway
and clustering unpack. No protobuf here: callers copy the three values into and out of the message.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

WIRE_DTYPE = np.dtype("<f4")


def pack_vectors(vectors: npt.ArrayLike) -> tuple[bytes, int, int]:
    """``(data, dim, count)`` for a 2-D array of shape ``(count, dim)``; values are cast to float32.

    Raises ValueError when the array is not 2-D, has rows of length 0, or holds NaN or infinity.
    """
    array = np.asarray(vectors)
    if array.ndim != 2:
        raise ValueError(f"vectors must be a 2-D array of shape (count, dim), got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"vectors must be numeric, got dtype {array.dtype}")
    if array.shape[0] > 0 and array.shape[1] == 0:
        raise ValueError(f"vectors must have dim >= 1, got shape {array.shape}")
    wire = np.ascontiguousarray(array, dtype=WIRE_DTYPE)
    if not np.isfinite(wire).all():
        raise ValueError("vectors must be finite (found NaN or infinity)")
    count, dim = wire.shape
    return wire.tobytes(), int(dim), int(count)


def unpack_vectors(data: bytes, dim: int, count: int, *, copy: bool = True) -> npt.NDArray[np.float32]:
    """The ``(count, dim)`` float32 array that ``data`` holds; checks that the lengths agree.

    With ``copy=True`` (the default) the array is a writable copy that owns its memory; with
    ``copy=False`` it is a read-only view of ``data`` (no copy; it keeps ``data`` alive), in native
    float32 on little-endian machines.

    Raises ValueError naming the expected and actual byte lengths when they differ, or when ``dim`` or
    ``count`` is negative, or ``dim`` is 0 while ``count`` is not.
    """
    if dim < 0 or count < 0:
        raise ValueError(f"dim and count must be non-negative, got dim={dim}, count={count}")
    if dim == 0 and count > 0:
        raise ValueError(f"dim must be positive when count is {count}")
    expected = dim * count * WIRE_DTYPE.itemsize
    if len(data) != expected:
        raise ValueError(
            f"packed vectors hold {len(data)} bytes, expected {expected} "
            f"(count {count} x dim {dim} x {WIRE_DTYPE.itemsize} bytes)"
        )
    array = np.frombuffer(data, dtype=WIRE_DTYPE).reshape(count, dim)
    return array.astype(np.float32, copy=copy)
