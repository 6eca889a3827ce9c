"""Packed little-endian float32 vectors: exact round trips, byte layout, and clear errors."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from briefxai_common.vectors import pack_vectors, unpack_vectors


def test_layout_is_row_major_little_endian_float32() -> None:
    data, dim, count = pack_vectors(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    assert (dim, count) == (3, 2)
    assert data == struct.pack("<6f", 1.0, 2.0, 3.0, 4.0, 5.0, 6.0)


def test_big_endian_and_float64_input_are_converted() -> None:
    source = np.array([[0.25, -1.5]], dtype=">f8")
    data, dim, count = pack_vectors(source)
    assert data == struct.pack("<2f", 0.25, -1.5)
    back = unpack_vectors(data, dim, count)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, source.astype(np.float32))


def test_unpacked_array_is_writable_and_owns_its_memory() -> None:
    data, dim, count = pack_vectors(np.ones((2, 2), dtype=np.float32))
    array = unpack_vectors(data, dim, count)
    array[0, 0] = 7.0
    assert unpack_vectors(data, dim, count)[0, 0] == 1.0


def test_unpacked_view_shares_the_bytes_and_is_read_only() -> None:
    data, dim, count = pack_vectors(np.arange(6, dtype=np.float32).reshape(3, 2))
    view = unpack_vectors(data, dim, count, copy=False)
    assert view.dtype == np.float32 and not view.flags.writeable and not view.flags.owndata
    np.testing.assert_array_equal(view, unpack_vectors(data, dim, count))


def test_empty_batch_round_trips() -> None:
    data, dim, count = pack_vectors(np.zeros((0, 384), dtype=np.float32))
    assert (data, dim, count) == (b"", 384, 0)
    assert unpack_vectors(data, dim, count).shape == (0, 384)


@pytest.mark.parametrize(
    ("data", "dim", "count", "message"),
    [
        (b"\x00" * 12, 4, 1, "hold 12 bytes, expected 16"),
        (b"\x00" * 20, 4, 1, "hold 20 bytes, expected 16"),
        (b"", 2, -1, "non-negative"),
        (b"", 0, 3, "dim must be positive"),
    ],
)
def test_unpack_rejects_inconsistent_lengths(data: bytes, dim: int, count: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        unpack_vectors(data, dim, count)


@pytest.mark.parametrize(
    ("vectors", "message"),
    [
        (np.ones(4), "2-D"),
        (np.ones((2, 2, 2)), "2-D"),
        (np.array([[1.0, np.nan]]), "finite"),
        (np.array([[np.inf, 0.0]]), "finite"),
        (np.array([["a", "b"]]), "numeric"),
        (np.zeros((3, 0)), "dim >= 1"),
    ],
)
def test_pack_rejects_bad_arrays(vectors: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pack_vectors(vectors)


finite_float32 = st.floats(allow_nan=False, allow_infinity=False, width=32)


@given(
    hnp.arrays(
        dtype=np.float32,
        shape=st.tuples(st.integers(0, 40), st.integers(1, 40)),
        elements=finite_float32,
    )
)
def test_round_trip_is_exact(vectors: np.ndarray) -> None:
    data, dim, count = pack_vectors(vectors)
    assert len(data) == vectors.size * 4
    assert (count, dim) == vectors.shape
    np.testing.assert_array_equal(unpack_vectors(data, dim, count), vectors)


@given(st.integers(1, 16), st.integers(1, 16), st.integers(-8, 8).filter(lambda delta: delta != 0))
def test_any_wrong_length_is_rejected(dim: int, count: int, delta: int) -> None:
    length = max(0, dim * count * 4 + delta)
    with pytest.raises(ValueError, match="expected"):
        unpack_vectors(b"\x01" * length, dim, count)
