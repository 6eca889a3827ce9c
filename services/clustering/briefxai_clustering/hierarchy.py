"""The hierarchy above the base clusters: agglomerative (Ward) clustering of their centroids.

- One Ward linkage (scipy) over the unit centroids of the reported base clusters (Euclidean distance
  between unit vectors is a monotone function of cosine distance). Each level above the base is a cut of
  that one dendrogram, so the levels nest by construction: every node has exactly one parent, and sizes
  add up through every level.
- Level counts shrink by a constant ratio: with k0 base clusters, ``L`` levels and a top target
  ``T = max_top_clusters``, level ``l`` gets ``round(k0 / r**l)`` clusters with ``r = (k0 / T) ** (1/L)``,
  and the top level exactly ``T``.
- ``L`` is at most ``hierarchy_depth``, and a level must at least halve the count below it
  (``MIN_LEVEL_RATIO``): 200 base clusters with depth 2 and T 10 give 200 -> 45 -> 10; 22 base clusters
  give 22 -> 10 (one level, since two levels would shrink by only 1.48 each), and 14 base clusters give
  14 -> 7 rather than a top level of mostly single-child wrappers. When the base level already
  has at most T clusters there is no level above it: the base clusters are the top level.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.cluster.hierarchy import linkage

from briefxai_clustering.model import FloatArray, IntArray

MIN_LEVEL_RATIO = 2.0


def level_counts(k0: int, depth: int, max_top: int) -> list[int]:
    """Cluster counts of the levels above a base level of ``k0`` clusters, lowest level first."""
    if depth <= 0 or k0 <= max_top:
        return []
    # A level of single-child wrappers says nothing: the top level at least halves the base too.
    max_top = min(max_top, max(2, k0 // 2))
    fit = math.floor(math.log(k0 / max_top) / math.log(MIN_LEVEL_RATIO) + 1e-9)
    levels = max(1, min(depth, fit))
    ratio = (k0 / max_top) ** (1.0 / levels)
    counts: list[int] = []
    previous = k0
    for level in range(1, levels + 1):
        count = max_top if level == levels else round(k0 / ratio**level)
        count = max(max_top, min(count, previous - 1))
        if count < previous:
            counts.append(count)
            previous = count
    return counts


def cut_levels(centroids: FloatArray, counts: list[int]) -> list[IntArray]:
    """For each count (descending), the cluster of every base cluster when the Ward dendrogram of
    ``centroids`` is cut into exactly that many clusters; labels are the union-find roots, not compact."""
    k0 = centroids.shape[0]
    if not counts:
        return []
    if any(not 1 <= c < k0 for c in counts) or counts != sorted(counts, reverse=True):
        raise ValueError(f"counts must be descending and in 1..{k0 - 1}, got {counts}")
    merges = linkage(centroids.astype(np.float64), method="ward")
    parent = list(range(2 * k0 - 1))

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    cuts: list[IntArray] = []
    done = 0
    for count in counts:
        for step in range(done, k0 - count):
            left, right = int(merges[step, 0]), int(merges[step, 1])
            parent[root(left)] = k0 + step
            parent[root(right)] = k0 + step
        done = k0 - count
        cuts.append(np.array([root(i) for i in range(k0)], dtype=np.int64))
    return cuts


def build_levels(centroids: FloatArray, sizes: IntArray, depth: int, max_top: int) -> list[IntArray]:
    """``levels[l][b]`` is the level-(l+1) cluster of base cluster ``b``, for every level above the base.

    Clusters of each level are numbered by size (largest first; ties: the one holding the lowest base
    cluster index first), so ids are stable for a given input.
    """
    cuts = cut_levels(centroids, level_counts(centroids.shape[0], depth, max_top))
    levels: list[IntArray] = []
    for roots in cuts:
        _, first, inverse = np.unique(roots, return_index=True, return_inverse=True)
        totals = np.bincount(inverse, weights=sizes)
        order = np.lexsort((first, -totals))  # size descending, then lowest base index
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        levels.append(rank[inverse].astype(np.int64))
    return levels


def parents(lower: IntArray, upper: IntArray, n_lower: int) -> IntArray:
    """Parent (in ``upper``) of each cluster of ``lower``; both map base clusters to their level's
    cluster. Raises ValueError when the levels do not nest."""
    parent = np.full(n_lower, -1, dtype=np.int64)
    parent[lower] = upper
    if (parent < 0).any() or not np.array_equal(parent[lower], upper):
        raise ValueError("levels do not nest")
    return parent
