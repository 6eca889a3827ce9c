"""Privacy thresholds: distinct users, merging, withholding, and the invariant check."""

from __future__ import annotations

import numpy as np
import pytest

from briefxai_clustering.privacy import (
    WITHHELD,
    PrivacyRule,
    PrivacyViolation,
    apply_privacy,
    check_thresholds,
    distinct_users,
    user_codes,
)


def unit(rows: list[list[float]]) -> np.ndarray:
    array = np.asarray(rows, dtype=np.float32)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def test_empty_user_id_counts_as_its_own_user() -> None:
    codes = user_codes(["a", "", "a", "", "b"], 5)
    assert codes[0] == codes[2]
    assert len(set(codes.tolist())) == 4
    assert len(set(user_codes([], 4).tolist())) == 4  # absent user ids: every conversation its own user


def test_distinct_users_per_cluster() -> None:
    labels = np.array([0, 0, 0, 1, 1, WITHHELD])
    codes = np.array([5, 5, 6, 7, 7, 8])
    assert distinct_users(labels, codes, 2).tolist() == [2, 1]


def test_small_cluster_is_merged_into_nearest_passing_cluster() -> None:
    centroids = unit([[1, 0], [0, 1], [0.9, 0.1]])
    labels = np.array([0] * 6 + [1] * 6 + [2] * 2)
    codes = np.arange(14)
    outcome = apply_privacy(labels, centroids, codes, PrivacyRule(5, 3, merge_small=True))
    assert outcome.withheld_count == 0
    assert outcome.merged_clusters == 1
    assert outcome.n_clusters == 2
    assert outcome.labels[12] == outcome.labels[0] == outcome.labels[13]


def test_cluster_of_few_users_fails_even_when_large() -> None:
    centroids = unit([[1, 0], [0, 1]])
    labels = np.array([0] * 10 + [1] * 10)
    codes = np.array([0, 1] * 5 + list(range(2, 12)))  # cluster 0: 10 conversations of 2 users
    outcome = apply_privacy(labels, centroids, codes, PrivacyRule(5, 3, merge_small=False))
    assert outcome.withheld_count == 10
    assert (outcome.labels[:10] == WITHHELD).all()
    assert (outcome.labels[10:] == 0).all()


def test_everything_withheld_when_no_cluster_passes() -> None:
    centroids = unit([[1, 0], [0, 1]])
    labels = np.array([0, 0, 1, 1])
    outcome = apply_privacy(labels, centroids, np.arange(4), PrivacyRule(5, 1, merge_small=True))
    assert outcome.n_clusters == 0
    assert outcome.withheld_count == 4
    assert (outcome.labels == WITHHELD).all()


def test_check_thresholds_names_the_failing_cluster() -> None:
    check_thresholds(np.array([5, 9]), np.array([3, 4]), PrivacyRule(5, 3), level=1)
    with pytest.raises(PrivacyViolation, match="level 2 cluster 1"):
        check_thresholds(np.array([5, 4]), np.array([3, 4]), PrivacyRule(5, 3), level=2)
