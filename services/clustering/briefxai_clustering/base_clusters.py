"""Base clusters: k-means on unit vectors (cosine geometry), deterministic for a seed.

- ``KMeans`` (Lloyd, k-means++ init) below ``minibatch_threshold`` vectors, ``MiniBatchKMeans`` from there
  on (100k x 384 with k=200 takes a few seconds on 2 cores; full KMeans would take minutes).
- ``random_state`` comes from the request seed (seeding.py) and ``n_init`` is fixed by settings, so the
  same input and seed give the same partition. (scikit-learn's multi-threaded Lloyd step adds per-thread
  partial sums in completion order; with 1 or 2 threads that is exactly reproducible, with more threads
  the centres may differ in the last bit, which only matters for points exactly between two centres.)
- The caller keeps k at most the number of distinct vectors (choose_k.py), which is what makes
  scikit-learn's "Number of distinct clusters found smaller than n_clusters" ConvergenceWarning
  impossible. Any cluster that still ends up empty is dropped and labels are renumbered 0..k'-1, so the
  result is always a valid partition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.cluster import KMeans, MiniBatchKMeans

from briefxai_clustering.model import FloatArray, IntArray


@dataclass(frozen=True)
class KMeansConfig:
    minibatch_threshold: int = 20_000
    kmeans_n_init: int = 1
    minibatch_n_init: int = 1
    minibatch_batch_size: int = 1024
    max_iter: int = 100


@dataclass(frozen=True)
class BaseClustering:
    labels: IntArray  # cluster per vector, 0..k-1, every cluster non-empty
    centroids: FloatArray  # (k, dim) unit vectors: normalised member means
    k: int
    algorithm: str  # "kmeans" or "minibatch-kmeans"


def normalized_centroids(vectors: FloatArray, labels: IntArray, k: int) -> FloatArray:
    """Unit-length mean direction of each cluster's members (a zero mean stays zero)."""
    sums = np.asarray(membership_matrix(labels, k) @ vectors, dtype=np.float64)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def membership_matrix(labels: IntArray, k: int) -> sparse.csr_matrix:
    """(k, n) 0/1 matrix with a 1 at (labels[i], i); ``matrix @ rows`` sums rows per cluster."""
    n = len(labels)
    return sparse.csr_matrix((np.ones(n, dtype=np.float32), (labels, np.arange(n))), shape=(k, n))


def compact_labels(labels: IntArray) -> tuple[IntArray, int]:
    """Renumbers labels to 0..k'-1 in order of first appearance; returns them and k'."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse].astype(np.int64), len(order)


def fit_base_clusters(vectors: FloatArray, k: int, random_state: int, config: KMeansConfig) -> BaseClustering:
    """k-means of unit ``vectors`` (n, dim) into at most ``k`` non-empty clusters."""
    n = vectors.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..{n}, got {k}")
    if k == 1:
        labels = np.zeros(n, dtype=np.int64)
        return BaseClustering(labels, normalized_centroids(vectors, labels, 1), 1, "kmeans")
    if n >= config.minibatch_threshold:
        model: KMeans | MiniBatchKMeans = MiniBatchKMeans(
            n_clusters=k,
            n_init=config.minibatch_n_init,
            batch_size=config.minibatch_batch_size,
            max_iter=config.max_iter,
            random_state=random_state,
        )
        algorithm = "minibatch-kmeans"
    else:
        model = KMeans(
            n_clusters=k, n_init=config.kmeans_n_init, max_iter=config.max_iter, random_state=random_state
        )
        algorithm = "kmeans"
    raw = np.asarray(model.fit_predict(vectors), dtype=np.int64)
    labels, k_found = compact_labels(raw)
    return BaseClustering(labels, normalized_centroids(vectors, labels, k_found), k_found, algorithm)
