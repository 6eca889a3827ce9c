"""Request checks: every violation with its field path, and what is accepted."""

from __future__ import annotations

import numpy as np
import pytest

from briefxai_clustering.validation import check_ids, check_shapes, decode_vectors
from briefxai_common.errors import InvalidArgument


def fields(error: pytest.ExceptionInfo[InvalidArgument]) -> list[str]:
    return [v.field for v in error.value.violations]


def test_shapes_accept_absent_user_ids_and_texts() -> None:
    check_shapes(4, 3, 48, ["a", "b", "c"], [], [], max_vectors=10)
    check_shapes(4, 3, 48, ["a", "b", "c"], ["u", "", "u"], ["x", "y", ""], max_vectors=10)


def test_shapes_report_every_violation_at_once() -> None:
    with pytest.raises(InvalidArgument) as error:
        check_shapes(4, 3, 40, ["a", "b"], ["u"], ["x", "y", "z", "w"], max_vectors=10)
    assert fields(error) == ["vectors.data", "ids", "user_ids", "texts"]


def test_empty_request_is_rejected_on_count_and_dim() -> None:
    with pytest.raises(InvalidArgument) as error:
        check_shapes(0, 0, 0, [], [], [], max_vectors=10)
    assert fields(error) == ["vectors.dim", "vectors.count"]


def test_ids_must_be_non_empty_short_and_unique() -> None:
    with pytest.raises(InvalidArgument) as error:
        check_ids(["a", "", "a", "x" * 257, "b", "b"])
    assert fields(error) == ["ids[1]", "ids[2]", "ids[3]", "ids[5]"]
    assert "duplicates ids[0]" in error.value.violations[1].description


def test_duplicate_report_is_capped() -> None:
    with pytest.raises(InvalidArgument) as error:
        check_ids(["same"] * 100)
    assert len(error.value.violations) == 20


def test_decode_rejects_nan_infinity_zero_rows_and_bad_lengths() -> None:
    good = np.array([[1, 2], [3, 4]], dtype="<f4")
    np.testing.assert_array_equal(decode_vectors(good.tobytes(), 2, 2), good)
    for bad, fragment in (
        (np.array([[1, np.nan], [3, 4]], dtype="<f4"), "vector 0 holds NaN"),
        (np.array([[1, 2], [-np.inf, 4]], dtype="<f4"), "vector 1 holds NaN or infinity"),
        (np.array([[1, 2], [0, 0]], dtype="<f4"), "vector 1 is all zeros"),
    ):
        with pytest.raises(InvalidArgument, match=fragment):
            decode_vectors(bad.tobytes(), 2, 2)
    with pytest.raises(InvalidArgument) as error:
        decode_vectors(good.tobytes()[:-1], 2, 2)
    assert fields(error) == ["vectors.data"]
