"""The pieces of a sampled analysis (``pipeline.py``): the seeded fit sample, the chunked nearest-centroid
assignment, and the tree counted again over every conversation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from briefxai_gateway.centroids import CentroidBuilder, nearest, unit_rows
from briefxai_gateway.models import ClusterNode, PackedBatch
from briefxai_gateway.pipeline import (
    Membership,
    PipelineError,
    check_grown,
    distinct_pairs,
    fit_sample,
    full_counts,
    take_rows,
    user_hash,
    within,
)


def packed(matrix: np.ndarray) -> PackedBatch:
    rows = np.ascontiguousarray(matrix, dtype="<f4")
    return PackedBatch(rows.tobytes(), rows.shape[1], rows.shape[0])


def test_the_fit_sample_is_seeded_sorted_and_without_repeats() -> None:
    sample = fit_sample(10_000, 700, seed=3)
    assert len(sample) == 700 == len(set(sample.tolist()))
    assert np.all(np.diff(sample) > 0) and sample[0] >= 0 and sample[-1] < 10_000
    assert np.array_equal(sample, fit_sample(10_000, 700, seed=3))
    assert not np.array_equal(sample, fit_sample(10_000, 700, seed=4))
    # Spread over the whole range, not its start: each tenth holds about a tenth of it.
    assert np.bincount(sample // 1000, minlength=10).min() > 35


def test_within_and_take_rows_cut_a_chunk() -> None:
    sample = np.array([1, 4, 5, 9, 12], dtype=np.int64)
    assert within(sample, 4, 10).tolist() == [4, 5, 9]
    assert within(sample, 13, 20).tolist() == []
    matrix = np.arange(24, dtype=np.float32).reshape(6, 4)
    picked = take_rows(packed(matrix), np.array([0, 5, 2]))
    assert (picked.count, picked.dim) == (3, 4)
    assert np.array_equal(np.frombuffer(picked.data, "<f4").reshape(3, 4), matrix[[0, 5, 2]])


def test_chunked_assignment_equals_the_whole_at_once() -> None:
    """Centroids summed chunk by chunk over the sample, then the rest assigned chunk by chunk: the same
    as the brute-force nearest centroid of the sample members' normalised means."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 16))
    truth = rng.integers(0, 5, size=1000)
    vectors = centres[truth] + 0.3 * rng.normal(size=(1000, 16))
    sample = fit_sample(1000, 300, seed=1)
    labels = np.full(1000, -1, dtype=np.int32)
    labels[sample] = truth[sample]
    ids = [f"L0-{i}" for i in range(5)]
    builder = CentroidBuilder(ids)
    for start in range(0, 1000, 128):
        keep = within(sample, start, start + 128)
        builder.add(labels[keep].tolist(), take_rows(packed(vectors[start : start + 128]), keep - start))
    present, matrix = builder.unit_centroids()
    assert present == ids
    rest = np.setdiff1d(np.arange(1000), sample)
    chunked = np.concatenate(
        [nearest(matrix, packed(vectors[rest[i : i + 97]]))[0] for i in range(0, len(rest), 97)]
    )
    unit = unit_rows(packed(vectors))
    means = np.stack([unit[sample][truth[sample] == c].sum(axis=0) for c in range(5)])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    assert np.array_equal(chunked, np.argmax(unit[rest] @ means.T, axis=1))
    assert (chunked == truth[rest]).mean() > 0.99


@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 6)), max_size=60))
def test_distinct_pairs_counts_distinct_users_per_group(pairs: list[tuple[int, int]]) -> None:
    groups = np.array([g for g, _ in pairs], dtype=np.int64)
    users = np.array([user_hash(f"user-{u}") for _, u in pairs], dtype=np.uint64)
    expected = [len({u for g, u in pairs if g == group}) for group in range(5)]
    assert distinct_pairs(groups, users, 5).tolist() == expected


def node(cluster_id: str, parent: str = "", children: tuple[str, ...] = (), size: int = 0) -> ClusterNode:
    level = int(cluster_id[1])
    return ClusterNode(cluster_id, level, parent, list(children), cluster_id, "", size, size, [])


def test_full_counts_count_every_level_over_all_conversations() -> None:
    tree = [
        node("L0-0", "L1-0"),
        node("L0-1", "L1-0"),
        node("L0-2", "L1-1"),
        node("L1-0", "L2-0", ("L0-0", "L0-1")),
        node("L1-1", "L2-0", ("L0-2",)),
        node("L2-0", "", ("L1-0", "L1-1")),
    ]
    # Base rows of eight conversations (-1: withheld) and their users ("" counts as a user of its own).
    labels = np.array([0, 0, 1, 2, -1, 2, 1, 0], dtype=np.int32)
    names = ["ann", "bob", "ann", "cy", "dee", "", "", "bob"]
    users = np.array([user_hash(name or f"\x00{i}") for i, name in enumerate(names)], dtype=np.uint64)
    counted = {
        c.id: (c.size, c.distinct_users)
        for c in full_counts(tree, Membership(["L0-0", "L0-1", "L0-2"], labels, users))
    }
    assert counted == {
        "L0-0": (3, 2),  # ann, bob, bob
        "L0-1": (2, 2),  # ann, a user of its own
        "L0-2": (2, 2),  # cy, a user of its own
        "L1-0": (5, 3),
        "L1-1": (2, 2),
        "L2-0": (7, 5),  # everyone but the withheld dee
    }
    assert Membership(["L0-0", "L0-1", "L0-2"], labels).cluster_ids(3, 6) == ["L0-2", "", "L0-2"]


def test_a_tree_that_shrank_against_its_sample_is_refused() -> None:
    fitted = [node("L0-0", size=6), node("L0-1", size=5)]
    check_grown(fitted, [node("L0-0", size=9), node("L0-1", size=5)])
    with pytest.raises(PipelineError, match="L0-1 counts 4"):
        check_grown(fitted, [node("L0-0", size=9), node("L0-1", size=4)])
