"""Memory of the pipeline: the row-wise passes work in chunks, and nothing copies every vector twice.

tracemalloc counts numpy's buffers, so the peaks below are exact sizes, not RSS guesses. The input
(n x 384 float32) is allocated before tracing starts; the pipeline's own sorted, normalised copy is
one input's worth, and everything else must stay small beside it.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from briefxai_clustering.model import ClusteringInput, ClusteringParams
from briefxai_clustering.pipeline import (
    ClusteringPipeline,
    normalize_rows,
    permute_rows_in_place,
    ranked_by_centrality,
)
from tests.clustering.synthetic import make_data

N, DIM = 40_000, 384
INPUT_BYTES = N * DIM * 4


@contextmanager
def traced() -> Iterator[Callable[[], int]]:
    """Yields a function giving the peak bytes allocated since the block began."""
    tracemalloc.start()
    try:
        yield lambda: tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_normalize_rows_in_place_allocates_little() -> None:
    rows = np.random.default_rng(0).standard_normal((N, DIM)).astype(np.float32)
    with traced() as peak:
        normalize_rows(rows, copy=False)
        assert peak() < INPUT_BYTES / 4  # one chunk of temporaries; a full copy would be 4x this
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-5)


def test_ranking_by_centrality_does_not_copy_every_row() -> None:
    rng = np.random.default_rng(1)
    vectors = normalize_rows(rng.standard_normal((N, DIM)).astype(np.float32))
    labels = rng.integers(0, 50, N).astype(np.int64)
    centroids = normalize_rows(rng.standard_normal((50, DIM)).astype(np.float32))
    with traced() as peak:
        ranked = ranked_by_centrality(vectors, labels, centroids)
        assert peak() < INPUT_BYTES / 4  # one chunk of temporaries; a full copy would be 4x this
    similarity = np.einsum("ij,ij->i", vectors, centroids[labels])
    for cluster, members in enumerate(ranked):
        assert set(members) == set(np.flatnonzero(labels == cluster))
        assert np.all(np.diff(similarity[members]) <= 1e-6)


def test_the_pipeline_holds_about_one_copy_of_the_vectors() -> None:
    data = make_data(N, centers=30, dim=DIM, seed=3, cluster_std=6.0)
    request = ClusteringInput(data.vectors, data.ids, data.user_ids, data.texts)
    pipeline = ClusteringPipeline()
    with traced() as peak:
        result = pipeline.run(request, ClusteringParams(seed=1, skip_map=True))
        used = peak()
    assert result.withheld_count == 0
    assert used < 1.5 * INPUT_BYTES, f"peak {used / 2**20:.0f} MiB for {INPUT_BYTES / 2**20:.0f} MiB of input"


def test_permute_rows_in_place_matches_fancy_indexing() -> None:
    rng = np.random.default_rng(5)
    for n in (1, 2, 7, 1000):
        rows = rng.standard_normal((n, 5)).astype(np.float32)
        order = rng.permutation(n).astype(np.int64)
        want = rows[order]
        assert permute_rows_in_place(rows, order) is rows
        np.testing.assert_array_equal(rows, want)


def test_a_consumed_input_gives_the_same_result_without_a_second_copy() -> None:
    data = make_data(N, centers=30, dim=DIM, seed=3, cluster_std=6.0)
    params = ClusteringParams(seed=1, skip_map=True)
    pipeline = ClusteringPipeline()
    copied = pipeline.run(ClusteringInput(data.vectors.copy(), data.ids, data.user_ids, data.texts), params)
    own = ClusteringInput(data.vectors.copy(), data.ids, data.user_ids, data.texts)
    with traced() as peak:
        consumed = pipeline.run(own, params, consume_input=True)
        used = peak()
    assert used < 0.6 * INPUT_BYTES, (
        f"peak {used / 2**20:.0f} MiB beside {INPUT_BYTES / 2**20:.0f} MiB of input"
    )
    assert [a.cluster_id for a in consumed.assignments] == [a.cluster_id for a in copied.assignments]
    assert [(c.id, c.name, c.size) for c in consumed.clusters] == [
        (c.id, c.name, c.size) for c in copied.clusters
    ]
