"""Property tests (hypothesis) of the clustering maths: valid partitions, determinism, permutation
invariance, unit norms and cosine bounds. Example counts stay small: the CPUs are shared."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from briefxai_clustering.base_clusters import normalized_centroids
from briefxai_clustering.model import ClusteringInput, ClusteringParams, ClusteringResult
from briefxai_clustering.pipeline import ClusteringPipeline, PipelineConfig, normalize_rows
from tests.clustering.helpers import assert_consistent

PIPELINE = ClusteringPipeline(PipelineConfig())
PROPERTY_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WORDS = ("password", "reset", "refund", "invoice", "garden", "tomato", "the", "and", "")


@dataclass(frozen=True)
class Case:
    data: ClusteringInput
    params: ClusteringParams


@st.composite
def cases(draw: st.DrawFn) -> Case:
    n = draw(st.integers(2, 30))
    dim = draw(st.integers(1, 5))
    # Small integers: many duplicates, ties and parallel vectors, the hard cases for k-means.
    vectors = draw(arrays(np.float32, (n, dim), elements=st.integers(-3, 3).map(float)))
    vectors[~np.any(vectors != 0, axis=1), 0] = 1.0  # zero rows are rejected by validation
    ids = draw(st.lists(st.text("abcxyz0123", min_size=1, max_size=6), min_size=n, max_size=n, unique=True))
    user_ids = draw(
        st.one_of(st.just([]), st.lists(st.sampled_from(["u1", "u2", "u3", ""]), min_size=n, max_size=n))
    )
    texts = draw(
        st.one_of(
            st.just([]),
            st.lists(st.lists(st.sampled_from(WORDS), max_size=4).map(" ".join), min_size=n, max_size=n),
        )
    )
    params = ClusteringParams(
        k=draw(st.integers(0, 8)),
        hierarchy_depth=draw(st.integers(1, 3)),
        max_top_clusters=draw(st.integers(1, 5)),
        min_cluster_size=draw(st.integers(1, 4)),
        min_distinct_users=draw(st.integers(1, 3)),
        seed=draw(st.integers(0, 2**64 - 1)),
        merge_small_clusters=draw(st.booleans()),
    )
    return Case(ClusteringInput(vectors, ids, user_ids, texts), params)


def partition(result: ClusteringResult) -> dict[str, str]:
    return {a.conversation_id: a.cluster_id for a in result.assignments}


@PROPERTY_SETTINGS
@given(cases())
def test_assignments_and_tree_are_always_valid(case: Case) -> None:
    result = PIPELINE.run(case.data, case.params)
    assert_consistent(result, case.data, case.params)
    assert 1 <= result.k <= len(case.data.ids)


@PROPERTY_SETTINGS
@given(cases())
def test_same_seed_same_result(case: Case) -> None:
    first = PIPELINE.run(case.data, case.params)
    again = PIPELINE.run(case.data, case.params)
    assert first.assignments == again.assignments
    assert first.clusters == again.clusters
    assert first.points == again.points
    assert first.k_rule == again.k_rule


@PROPERTY_SETTINGS
@given(cases(), st.randoms(use_true_random=False))
def test_partition_is_invariant_under_input_permutation(case: Case, random: object) -> None:
    order = list(range(len(case.data.ids)))
    random.shuffle(order)  # type: ignore[attr-defined]
    data = case.data
    shuffled = ClusteringInput(
        data.vectors[order],
        [data.ids[i] for i in order],
        [data.user_ids[i] for i in order] if data.user_ids else [],
        [data.texts[i] for i in order] if data.texts else [],
    )
    first = PIPELINE.run(data, case.params)
    second = PIPELINE.run(shuffled, case.params)
    # Input rows are sorted by id before clustering, so even cluster ids, names and map points agree.
    assert partition(first) == partition(second)
    assert first.clusters == second.clusters
    assert {p.conversation_id: (p.x, p.y) for p in first.points} == {
        p.conversation_id: (p.x, p.y) for p in second.points
    }


finite_rows = arrays(
    np.float32,
    st.tuples(st.integers(1, 20), st.integers(1, 16)),
    elements=st.floats(allow_nan=False, allow_infinity=False, width=32),
)


@settings(max_examples=60, deadline=None)
@given(finite_rows)
def test_normalised_rows_have_unit_norm_and_cosines_in_bounds(rows: np.ndarray) -> None:
    rows[~np.any(rows != 0, axis=1), 0] = 1.0
    unit = normalize_rows(rows)
    assert unit.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(unit.astype(np.float64), axis=1), 1.0, atol=1e-5)
    cosines = unit @ unit.T
    assert np.all(cosines <= 1.0 + 1e-5) and np.all(cosines >= -1.0 - 1e-5)
    labels = np.arange(len(unit)) % 3
    centroids = normalized_centroids(unit, labels, int(labels.max()) + 1)
    norms = np.linalg.norm(centroids.astype(np.float64), axis=1)
    assert np.all((np.abs(norms - 1.0) < 1e-5) | (norms == 0))
