"""2-D map coordinates of the reported conversations.

- Fewer than ``umap_min_points`` points (default 50), or fewer distinct ones: PCA to 2 components. UMAP
  needs a neighbourhood graph of ``n_neighbors`` (15) points per point to mean anything.
- Otherwise UMAP (umap-learn, ``random_state`` from the request seed, ``n_neighbors`` 15):
  1. PCA to ``map_pca_dims`` (50) dimensions, fitted on the sample below: the neighbour searches cost a
     fraction of the full 384 dimensions, and the map only needs the main directions.
  2. A sample of about ``umap_sample_size`` (10,000) points, stratified by base cluster (each cluster in
     proportion, at least 5 points of each); its exact k-nearest-neighbour graph (scikit-learn brute
     force, Euclidean on the reduced unit vectors ~ cosine) is passed to UMAP as ``precomputed_knn``, so
     pynndescent (and its long numba compilation) is never needed.
  3. UMAP lays the sample out in 2-D (``init="pca"``: spectral init on a clustered kNN graph with many
     components costs seconds more for no visible gain).
  4. Every point outside the sample is placed at the inverse-distance-weighted mean of the positions of
     its 5 nearest sampled neighbours *of its own base cluster*. This keeps 100k points at the cost of a
     10k UMAP plus small neighbour queries, where ``UMAP.transform`` takes minutes on 2 cores.
  ``map_algorithm`` is "umap" when every point was in the sample, "umap-sampled" otherwise, "pca" below.
- Coordinates are centred and scaled so the largest absolute value is 1 (for PCA as for UMAP).
- umap-learn is imported lazily (importing numba costs seconds), and its numba functions compile on first
  use (~10-30 s on 2 cores); ``warm_up`` runs a small map so a server can pay that before it reports
  SERVING. umap's on-disk numba cache (``NUMBA_CACHE_DIR`` where site-packages is read-only) shortens
  later starts.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from briefxai_clustering.choose_k import count_distinct_rows
from briefxai_clustering.model import FloatArray, IntArray

OUT_OF_SAMPLE_NEIGHBOURS = 5
MIN_SAMPLED_PER_GROUP = 5
_umap_lock = threading.Lock()
_umap_class: Any = None


@dataclass(frozen=True)
class MapConfig:
    umap_min_points: int = 50
    sample_size: int = 10_000
    n_neighbors: int = 15
    n_epochs: int = 200
    pca_dims: int = 50


@dataclass(frozen=True)
class Projection:
    coords: FloatArray  # (n, 2), centred, max |value| 1
    algorithm: str  # "pca", "umap" or "umap-sampled"


def umap_class() -> Any:
    """``umap.UMAP``, imported on first use."""
    global _umap_class
    with _umap_lock:
        if _umap_class is None:
            from umap import UMAP

            _umap_class = UMAP
        return _umap_class


def scaled(coords: np.ndarray) -> FloatArray:
    """Centred, largest absolute coordinate 1 (all zeros stay zeros)."""
    coords = np.asarray(coords, dtype=np.float64)
    coords = coords - coords.mean(axis=0, keepdims=True)
    peak = float(np.abs(coords).max()) if coords.size else 0.0
    if peak > 0:
        coords = coords / peak
    return coords.astype(np.float32)


def pca_map(vectors: FloatArray, random_state: int) -> Projection:
    n, dim = vectors.shape
    if n == 1 or (vectors == vectors[0]).all():  # one point, or no variance to project
        return Projection(np.zeros((n, 2), dtype=np.float32), "pca")
    components = min(2, n, dim)
    coords = PCA(n_components=components, svd_solver="full", random_state=random_state).fit_transform(vectors)
    if components < 2:
        coords = np.hstack([coords, np.zeros((n, 2 - components))])
    return Projection(scaled(coords), "pca")


def stratified_sample(n: int, size: int, groups: IntArray | None, rng: np.random.Generator) -> IntArray:
    """Sorted indices of about ``size`` of ``n`` points: uniform, or per group in proportion to its size
    with at least ``MIN_SAMPLED_PER_GROUP`` (or all) of each group, so that no group is left out."""
    if groups is None:
        return np.sort(rng.choice(n, size, replace=False))
    chosen: list[IntArray] = []
    for members in split_by_group(np.arange(n), groups):
        take = min(len(members), max(MIN_SAMPLED_PER_GROUP, round(size * len(members) / n)))
        chosen.append(rng.choice(members, take, replace=False))
    return np.sort(np.concatenate(chosen))


def split_by_group(indices: IntArray, groups: IntArray) -> list[IntArray]:
    """``indices`` split by ``groups[indices]``, groups in ascending order, indices in their order."""
    if len(indices) == 0:
        return []
    keys = groups[indices]
    order = np.argsort(keys, kind="stable")
    bounds = np.flatnonzero(np.diff(keys[order])) + 1
    return [indices[part] for part in np.split(order, bounds)]


def place_by_neighbours(layout: np.ndarray, sample_points: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Each of ``points`` at the inverse-distance-weighted mean of its nearest ``sample_points``' layout."""
    near = min(OUT_OF_SAMPLE_NEIGHBOURS, len(sample_points))
    search = NearestNeighbors(n_neighbors=near, algorithm="brute").fit(sample_points)
    distances, indices = search.kneighbors(points)
    weights = 1.0 / (distances + 1e-6)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.asarray(np.einsum("pk,pkc->pc", weights, layout[indices]))


def project(
    vectors: FloatArray,
    random_state: int,
    config: MapConfig,
    groups: IntArray | None = None,
    distinct: int | None = None,
) -> Projection:
    """2-D coordinates for ``vectors`` (n, dim) unit rows, deterministic for ``random_state``.

    ``groups`` (optional, e.g. the base clusters): the UMAP sample is stratified by group and points
    outside it are placed among the sampled points of their own group (cheaper, and keeps each cluster
    together on the map). ``distinct``: the number of distinct rows when the caller knows it.
    """
    n, dim = vectors.shape
    if n < max(config.umap_min_points, 3) or dim < 3:
        return pca_map(vectors, random_state)
    if (distinct if distinct is not None else count_distinct_rows(vectors)) < config.umap_min_points:
        return pca_map(vectors, random_state)
    rng = np.random.default_rng(random_state)
    sampled = n > config.sample_size
    sample = stratified_sample(n, config.sample_size, groups, rng) if sampled else np.arange(n)
    reduced = vectors
    if 0 < config.pca_dims < dim:
        pca = PCA(n_components=config.pca_dims, svd_solver="randomized", random_state=random_state)
        pca.fit(vectors[sample])
        reduced = pca.transform(vectors).astype(np.float32)
    points = np.ascontiguousarray(reduced[sample])
    n_neighbors = min(config.n_neighbors, len(sample) - 1)
    search = NearestNeighbors(n_neighbors=n_neighbors - 1, algorithm="brute").fit(points)
    distances, indices = search.kneighbors()  # each point's neighbours, itself excluded
    knn_indices = np.hstack([np.arange(len(sample))[:, None], indices]).astype(np.int64)
    knn_distances = np.hstack([np.zeros((len(sample), 1)), distances]).astype(np.float32)
    umap = umap_class()(
        n_neighbors=n_neighbors,
        n_components=2,
        metric="euclidean",
        n_epochs=config.n_epochs,
        init="pca",
        random_state=random_state,
        n_jobs=1,
        precomputed_knn=(knn_indices, knn_distances, None),
    )
    with warnings.catch_warnings():
        # We never call UMAP.transform, so its warning that transform needs an NNDescent index is noise.
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
        layout = np.asarray(umap.fit_transform(points), dtype=np.float64)
    coords = np.empty((n, 2), dtype=np.float64)
    coords[sample] = layout
    if sampled:
        rest = np.setdiff1d(np.arange(n), sample, assume_unique=True)
        if groups is None:
            coords[rest] = place_by_neighbours(layout, points, reduced[rest])
        else:
            position = np.full(n, -1, dtype=np.int64)
            position[sample] = np.arange(len(sample))
            in_sample = split_by_group(sample, groups)
            by_group = {int(groups[members[0]]): members for members in in_sample}
            for members in split_by_group(rest, groups):
                own = by_group[int(groups[members[0]])]
                coords[members] = place_by_neighbours(layout[position[own]], reduced[own], reduced[members])
    return Projection(scaled(coords), "umap-sampled" if sampled else "umap")


def warm_up(config: MapConfig) -> None:
    """Runs a small UMAP map so numba compiles its functions now rather than in the first request."""
    rng = np.random.default_rng(0)
    dim = max(config.pca_dims, 2) + 14
    centres = rng.normal(size=(4, dim))
    points = centres[rng.integers(0, 4, size=300)] + rng.normal(scale=0.3, size=(300, dim))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    project(
        points.astype(np.float32), 0, MapConfig(umap_min_points=50, sample_size=200, pca_dims=config.pca_dims)
    )
