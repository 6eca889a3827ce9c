"""Where k is chosen: the automatic rule, its caps, and clamping of an explicit k."""

from __future__ import annotations

import math

import numpy as np
import pytest

from briefxai_clustering.choose_k import choose_k, count_distinct_rows


@pytest.mark.parametrize(
    ("n", "expected"),
    [(2, 2), (3, 2), (8, 3), (50, 7), (1_000, 32), (2_873, 54), (10_000, 100), (40_000, 200), (200_000, 200)],
)
def test_auto_rule_is_sqrt_n_within_bounds(n: int, expected: int) -> None:
    choice = choose_k(n, n, 0, max_k=200, min_cluster_size=1)
    assert choice.k == expected
    assert choice.k == min(max(round(math.sqrt(n)), 2), 200)
    assert choice.rule.startswith("auto: round(sqrt(n))")


def test_auto_rule_reports_the_max_k_cap() -> None:
    choice = choose_k(100_000, 100_000, 0, max_k=200, min_cluster_size=5)
    assert choice.k == 200
    assert "capped at 200 (max_k=200)" in choice.rule


def test_auto_k_keeps_the_average_cluster_above_the_privacy_threshold() -> None:
    choice = choose_k(1_000, 1_000, 0, max_k=200, min_cluster_size=100)
    assert choice.k == 10
    assert "n // min_cluster_size" in choice.rule
    assert choose_k(20, 20, 0, max_k=200, min_cluster_size=50).k == 2  # never below 2


def test_auto_k_is_clamped_to_distinct_vectors() -> None:
    choice = choose_k(1_000, 3, 0, max_k=200, min_cluster_size=5)
    assert choice.k == 3
    assert "clamped to 3 (distinct vectors)" in choice.rule
    assert choose_k(10, 1, 0, max_k=200, min_cluster_size=1).k == 1


def test_explicit_k_is_used_and_clamped_to_distinct_vectors() -> None:
    assert choose_k(100, 100, 7, max_k=200, min_cluster_size=5).k == 7
    assert choose_k(100, 100, 7, max_k=200, min_cluster_size=5).rule == "requested: k=7"
    clamped = choose_k(10, 4, 50, max_k=200, min_cluster_size=5)
    assert clamped.k == 4
    assert "requested: k=50, clamped to 4" in clamped.rule


def test_choose_k_rejects_inconsistent_counts() -> None:
    with pytest.raises(ValueError):
        choose_k(5, 6, 0, max_k=10, min_cluster_size=1)


def test_count_distinct_rows_is_exact() -> None:
    rows = np.array([[1, 0], [0, 1], [1, 0], [0.5, 0.5], [0, 1]], dtype=np.float32)
    assert count_distinct_rows(rows) == 3
    assert count_distinct_rows(np.ones((50, 4), dtype=np.float32)) == 1
