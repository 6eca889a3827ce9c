"""Properties of the unit-length scaling every backend applies."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from briefxai_embedding.backends import l2_normalize

rows = hnp.arrays(
    dtype=np.float64,
    shape=st.tuples(st.integers(1, 8), st.integers(1, 64)),
    elements=st.floats(-1e300, 1e300, allow_nan=False, allow_infinity=False),
)


@given(rows)
def test_nonzero_rows_get_unit_norm_and_keep_direction(vectors: np.ndarray) -> None:
    assume(bool(np.all(np.abs(vectors).max(axis=1) > 0)))
    normalized = l2_normalize(vectors)
    assert normalized.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(normalized.astype(np.float64), axis=1), 1.0, atol=1e-6)
    # Same direction: the cosine with the (rescaled) input row is 1.
    scaled = vectors / np.abs(vectors).max(axis=1, keepdims=True)
    cosine = np.sum(normalized * scaled, axis=1) / np.linalg.norm(scaled, axis=1)
    np.testing.assert_allclose(cosine, 1.0, atol=1e-5)


@given(rows)
def test_cosine_of_normalized_vectors_is_within_minus_one_and_one(vectors: np.ndarray) -> None:
    normalized = l2_normalize(vectors).astype(np.float64)
    cosines = normalized @ normalized.T
    assert np.all(cosines <= 1.0 + 1e-6)
    assert np.all(cosines >= -1.0 - 1e-6)


def test_zero_rows_stay_zero() -> None:
    normalized = l2_normalize(np.array([[0.0, 0.0], [3.0, 4.0]]))
    np.testing.assert_array_equal(normalized[0], [0.0, 0.0])
    np.testing.assert_allclose(normalized[1], [0.6, 0.8], rtol=1e-6)
