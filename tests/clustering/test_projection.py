"""2-D map: PCA for tiny inputs, UMAP above, the sampled path for large inputs; seeded and scaled."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from briefxai_clustering.projection import MapConfig, pca_map, project, scaled, stratified_sample
from tests.clustering.synthetic import make_data


def test_pca_below_the_umap_minimum() -> None:
    data = make_data(30, centers=3, dim=16, seed=1)
    result = project(data.vectors, 0, MapConfig(umap_min_points=50))
    assert result.algorithm == "pca"
    assert result.coords.shape == (30, 2)
    assert np.abs(result.coords).max() == pytest.approx(1.0)
    np.testing.assert_allclose(result.coords.mean(axis=0), 0, atol=1e-6)


def test_pca_edge_cases_one_point_two_points_one_dimension() -> None:
    assert pca_map(np.ones((1, 4), dtype=np.float32), 0).coords.tolist() == [[0.0, 0.0]]
    two = pca_map(np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32), 0).coords
    assert two.shape == (2, 2)
    assert np.abs(two[:, 0]).tolist() == [1.0, 1.0]
    line = project(np.array([[1], [-1], [1]], dtype=np.float32), 0, MapConfig())
    assert line.algorithm == "pca"
    assert line.coords.shape == (3, 2)


def test_duplicates_below_the_minimum_distinct_use_pca() -> None:
    vectors = np.repeat(np.eye(4, dtype=np.float32), 30, axis=0)
    assert project(vectors, 0, MapConfig(umap_min_points=50)).algorithm == "pca"


def test_umap_map_keeps_planted_clusters_apart_and_is_seeded() -> None:
    data = make_data(300, centers=4, dim=24, seed=2)
    config = MapConfig(umap_min_points=50, n_epochs=50, pca_dims=10)
    first = project(data.vectors, 3, config)
    assert first.algorithm == "umap"
    assert first.coords.shape == (300, 2)
    assert np.isfinite(first.coords).all()
    layout_clusters = KMeans(4, n_init=3, random_state=0).fit_predict(first.coords)
    assert adjusted_rand_score(data.labels, layout_clusters) > 0.9
    np.testing.assert_array_equal(project(data.vectors, 3, config).coords, first.coords)


def test_sampled_umap_places_every_point_near_its_group() -> None:
    data = make_data(400, centers=4, dim=24, seed=3)
    config = MapConfig(umap_min_points=50, sample_size=120, n_epochs=50, pca_dims=10)
    result = project(data.vectors, 1, config, groups=data.labels.astype(np.int64))
    assert result.algorithm == "umap-sampled"
    assert result.coords.shape == (400, 2)
    layout_clusters = KMeans(4, n_init=3, random_state=0).fit_predict(result.coords)
    assert adjusted_rand_score(data.labels, layout_clusters) > 0.9
    ungrouped = project(data.vectors, 1, config)
    assert ungrouped.algorithm == "umap-sampled"
    assert np.isfinite(ungrouped.coords).all()


def test_stratified_sample_covers_every_group() -> None:
    rng = np.random.default_rng(0)
    groups = np.array([0] * 1000 + [1] * 6 + [2] * 3)
    sample = stratified_sample(len(groups), 100, groups, rng)
    assert np.all(np.diff(sample) > 0)
    counts = np.bincount(groups[sample], minlength=3)
    assert counts[1] == 5 and counts[2] == 3
    assert 95 <= counts[0] <= 105


def test_scaled_centres_and_bounds() -> None:
    coords = scaled(np.array([[0.0, 10.0], [2.0, 14.0]]))
    np.testing.assert_allclose(coords, [[-0.5, -1.0], [0.5, 1.0]])
    assert scaled(np.zeros((3, 2))).tolist() == [[0.0, 0.0]] * 3
