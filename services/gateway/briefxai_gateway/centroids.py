"""The nearest base cluster of a new conversation: the base clusters' centroids and the distance threshold.

- A base cluster's centroid is the normalised mean of its reported members' vectors (unit vectors, in
  the analysis's own embedding); the distance of a conversation to a cluster is the cosine distance
  ``1 - cos(v, centroid)``, 0..2.
- The centroids are computed once per analysis, in two passes over the stored vectors chunk by chunk
  (sums, then each member's distance to its own centroid), never holding every vector. The stored tree
  never changes and neither do the members behind it, so every revision assigns against the same
  centroids: a conversation gets the same cluster and distance whichever revision it joins. They are
  stored (``assignment_centroids``) and cached by the assigner.
- The threshold past which a conversation is *unassigned*: the gateway's ``assign_max_distance`` when
  set; otherwise the ``assign_distance_percentile`` (default 99) of the distances of the analysis's own
  members to their own centroid. The rule is calibrated on the analysis itself: a new conversation
  like the analysed ones is left out about as often as 1 % of the analysed ones would be (k-means put
  each of them in its cluster, yet 1 % lie farther than this from its centre), whatever the embedding
  model, text view or number of clusters, where a fixed number would mean something else for each.
  What lies farther than 99 % of the clusters' own members is no longer "like" any of them.
- An analysis fitted on a sample (``pipeline.py``) assigns its conversations outside the sample by the
  same rule (:func:`nearest`), to centroids summed over the sample's members (:meth:`CentroidBuilder.
  unit_centroids`), with no threshold: k-means itself puts every conversation in a cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .models import PackedBatch

PERCENTILES = tuple(range(101))
FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


def unit_rows(vectors: PackedBatch) -> FloatArray:
    """The packed vectors as a (count, dim) float32 array of unit rows (zero rows stay zero)."""
    matrix = np.frombuffer(vectors.data, dtype="<f4", count=vectors.count * vectors.dim)
    matrix = matrix.reshape(vectors.count, vectors.dim).astype(np.float32, copy=True)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    matrix /= norms
    return matrix


def nearest(matrix: FloatArray, vectors: PackedBatch) -> tuple[IntArray, npt.NDArray[np.float64]]:
    """For each vector: the row of its nearest unit centroid in ``matrix`` and the cosine distance to it
    (ties: the lower row)."""
    if vectors.count == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    similarity = unit_rows(vectors) @ matrix.T
    rows = np.argmax(similarity, axis=1).astype(np.int64)
    best = similarity[np.arange(len(rows)), rows].astype(np.float64)
    return rows, np.clip(1.0 - best, 0.0, 2.0)


@dataclass(frozen=True, slots=True)
class Centroids:
    """The base clusters' unit centroids (rows in ``cluster_ids`` order) and their members' distances."""

    cluster_ids: list[str]
    matrix: FloatArray  # (k, dim), unit rows
    members: int
    # The members' distances to their own centroid at percentiles 0, 1, ..., 100.
    distance_percentiles: list[float]
    # The embedding model of the vectors they were computed from.
    model: str

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def max_distance(self, percentile: float) -> float:
        """The members' distance at ``percentile`` (0..100, interpolated between whole percentiles)."""
        return float(np.interp(percentile, PERCENTILES, self.distance_percentiles))

    def nearest(self, vectors: PackedBatch) -> tuple[IntArray, npt.NDArray[np.float64]]:
        """For each vector: the row of its nearest centroid and the cosine distance to it."""
        return nearest(self.matrix, vectors)

    def to_bytes(self) -> bytes:
        return np.ascontiguousarray(self.matrix, dtype="<f4").tobytes()

    @classmethod
    def from_bytes(
        cls,
        cluster_ids: Sequence[str],
        data: bytes,
        dim: int,
        members: int,
        distance_percentiles: Sequence[float],
        model: str,
    ) -> Centroids:
        matrix = np.frombuffer(data, dtype="<f4").reshape(len(cluster_ids), dim).astype(np.float32)
        return cls(list(cluster_ids), matrix, members, [float(v) for v in distance_percentiles], model)


class CentroidBuilder:
    """Two passes over the members' vectors, chunk by chunk: :meth:`add` every chunk (sums), then
    :meth:`add_distances` every chunk again (distances to the finished centroids), then :meth:`build`.

    ``labels`` give each vector's base cluster as a row of ``cluster_ids``, or -1 for a conversation
    that is in no base cluster (withheld)."""

    def __init__(self, cluster_ids: Sequence[str]) -> None:
        self.cluster_ids = list(cluster_ids)
        self._sums: npt.NDArray[np.float64] | None = None
        self._counts = np.zeros(len(self.cluster_ids), dtype=np.int64)
        self._centroids: FloatArray | None = None
        self._distances: list[npt.NDArray[np.float64]] = []

    def add(self, labels: Sequence[int], vectors: PackedBatch) -> None:
        keep = np.asarray(labels, dtype=np.int64)
        rows = unit_rows(vectors)
        if self._sums is None:
            self._sums = np.zeros((len(self.cluster_ids), vectors.dim), dtype=np.float64)
        member = keep >= 0
        if not member.any():
            return
        # Sorted by cluster, each cluster's rows summed in one reduceat (np.add.at is far slower).
        labels_in = keep[member]
        order = np.argsort(labels_in, kind="stable")
        labels_in = labels_in[order]
        starts = np.flatnonzero(np.r_[True, labels_in[1:] != labels_in[:-1]])
        self._sums[labels_in[starts]] += np.add.reduceat(rows[member][order], starts, axis=0)
        self._counts += np.bincount(labels_in, minlength=len(self.cluster_ids))

    def unit_centroids(self) -> tuple[list[str], FloatArray]:
        """After :meth:`add` of every chunk: the ids and unit centroids of the clusters that have members
        (the first pass alone, without the members' distances that :meth:`build` also needs)."""
        present = self._counts > 0
        matrix = np.ascontiguousarray(self._finished()[present])
        return [cid for cid, ok in zip(self.cluster_ids, present, strict=True) if ok], matrix

    def _finished(self) -> FloatArray:
        if self._centroids is None:
            if self._sums is None or not self._counts.any():
                raise ValueError("no member vectors")
            sums = self._sums.copy()
            norms = np.linalg.norm(sums, axis=1, keepdims=True)
            norms[norms == 0] = 1.0
            self._centroids = (sums / norms).astype(np.float32)
        return self._centroids

    def add_distances(self, labels: Sequence[int], vectors: PackedBatch) -> None:
        keep = np.asarray(labels, dtype=np.int64)
        member = keep >= 0
        if not member.any():
            return
        rows = unit_rows(vectors)[member]
        centroids = self._finished()[keep[member]]
        self._distances.append(np.clip(1.0 - np.einsum("ij,ij->i", rows, centroids), 0.0, 2.0))

    def build(self, model: str) -> Centroids:
        """The centroids of the clusters that have members (a base cluster always has some)."""
        cluster_ids, matrix = self.unit_centroids()
        distances = np.concatenate(self._distances) if self._distances else np.zeros(1)
        percentiles = np.percentile(distances, PERCENTILES)
        return Centroids(
            cluster_ids=cluster_ids,
            matrix=matrix,
            members=int(self._counts.sum()),
            distance_percentiles=[float(v) for v in percentiles],
            model=model,
        )
