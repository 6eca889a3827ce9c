"""The hierarchy: level counts by a constant ratio, nesting, and sizes adding up."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from briefxai_clustering.hierarchy import build_levels, cut_levels, level_counts, parents


@pytest.mark.parametrize(
    ("k0", "depth", "top", "expected"),
    [
        (200, 2, 10, [45, 10]),
        (200, 3, 10, [74, 27, 10]),
        (22, 2, 10, [10]),  # two levels would shrink by less than 2 each
        (15, 2, 10, [7]),  # one level is always added above the target, and it at least halves
        (22, 1, 10, [10]),
        (10, 2, 10, []),
        (3, 2, 10, []),
        (100, 0, 10, []),
        (64, 6, 1, [32, 16, 8, 4, 2, 1]),
    ],
)
def test_level_counts(k0: int, depth: int, top: int, expected: list[int]) -> None:
    counts = level_counts(k0, depth, top)
    assert counts == expected
    assert all(b < a for a, b in zip([k0, *counts], counts, strict=False))


def test_cuts_have_exact_counts_and_nest() -> None:
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(40, 8)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    cuts = cut_levels(centroids, [12, 4, 1])
    assert [len(np.unique(c)) for c in cuts] == [12, 4, 1]
    for lower, upper in itertools.pairwise(cuts):
        for cluster in np.unique(lower):
            assert len(np.unique(upper[lower == cluster])) == 1


def test_build_levels_numbers_by_size_and_sizes_add_up() -> None:
    rng = np.random.default_rng(1)
    centroids = rng.normal(size=(30, 5)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    sizes = rng.integers(5, 50, size=30)
    levels = build_levels(centroids, sizes, depth=2, max_top=4)
    assert [int(level.max()) + 1 for level in levels] == level_counts(30, 2, 4)
    previous = np.arange(30)
    previous_sizes = sizes
    for level in levels:
        totals = np.bincount(level, weights=sizes)
        assert list(totals) == sorted(totals, reverse=True)
        assert totals.sum() == sizes.sum()
        parent = parents(previous, level, int(previous.max()) + 1)
        np.testing.assert_array_equal(np.bincount(parent, weights=previous_sizes), totals)
        previous, previous_sizes = level, totals


def test_identical_centroids_still_cut_to_exact_counts() -> None:
    centroids = np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (12, 1))
    assert [len(np.unique(c)) for c in cut_levels(centroids, [6, 3])] == [6, 3]


def test_parents_rejects_levels_that_do_not_nest() -> None:
    with pytest.raises(ValueError, match="nest"):
        parents(np.array([0, 0, 1]), np.array([0, 1, 1]), 2)
