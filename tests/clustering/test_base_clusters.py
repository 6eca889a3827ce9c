"""k-means base clusters: planted clusters recovered, both algorithms, duplicates handled, seeded."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score

from briefxai_clustering.base_clusters import (
    KMeansConfig,
    compact_labels,
    fit_base_clusters,
    normalized_centroids,
)
from tests.clustering.synthetic import make_data


def test_kmeans_recovers_planted_clusters() -> None:
    data = make_data(600, centers=6, dim=32, seed=3)
    result = fit_base_clusters(data.vectors, 6, 11, KMeansConfig())
    assert result.algorithm == "kmeans"
    assert result.k == 6
    assert adjusted_rand_score(data.labels, result.labels) > 0.95


def test_minibatch_kmeans_past_the_threshold_recovers_planted_clusters() -> None:
    data = make_data(3_000, centers=8, dim=48, seed=4)
    result = fit_base_clusters(data.vectors, 8, 5, KMeansConfig(minibatch_threshold=1_000))
    assert result.algorithm == "minibatch-kmeans"
    assert adjusted_rand_score(data.labels, result.labels) > 0.9


def test_same_seed_same_partition_other_seed_still_valid() -> None:
    data = make_data(400, centers=5, dim=16, seed=5, cluster_std=4.0)
    first = fit_base_clusters(data.vectors, 9, 1, KMeansConfig())
    again = fit_base_clusters(data.vectors, 9, 1, KMeansConfig())
    np.testing.assert_array_equal(first.labels, again.labels)
    np.testing.assert_array_equal(first.centroids, again.centroids)
    other = fit_base_clusters(data.vectors, 9, 2, KMeansConfig())
    assert set(np.unique(other.labels)) == set(range(other.k))


def test_identical_vectors_give_one_valid_cluster_without_warnings() -> None:
    vectors = np.tile(np.array([[0.6, 0.8]], dtype=np.float32), (30, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        result = fit_base_clusters(vectors, 1, 0, KMeansConfig())
    assert result.k == 1
    assert (result.labels == 0).all()
    np.testing.assert_allclose(result.centroids, [[0.6, 0.8]], atol=1e-6)


def test_few_distinct_vectors_with_k_equal_to_them_partition_without_warnings() -> None:
    base = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    vectors = np.repeat(base, 10, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        result = fit_base_clusters(vectors, 3, 0, KMeansConfig())
    assert result.k == 3
    assert adjusted_rand_score(np.repeat([0, 1, 2], 10), result.labels) == 1.0


def test_centroids_are_unit_mean_directions() -> None:
    vectors = np.array([[1, 0], [0, 1], [-1, 0]], dtype=np.float32)
    centroids = normalized_centroids(vectors, np.array([0, 0, 1]), 2)
    np.testing.assert_allclose(centroids, [[np.sqrt(0.5), np.sqrt(0.5)], [-1, 0]], atol=1e-6)


def test_compact_labels_renumbers_in_order_of_first_appearance() -> None:
    labels, k = compact_labels(np.array([7, 3, 7, 9, 3]))
    assert k == 3
    assert labels.tolist() == [0, 1, 0, 2, 1]
