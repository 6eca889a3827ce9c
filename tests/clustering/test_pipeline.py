"""The whole pipeline on synthetic blobs: recovery, tree consistency, privacy, edge cases."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import adjusted_rand_score

from briefxai_clustering.model import ClusteringInput, ClusteringParams, FloatArray
from briefxai_clustering.naming import ClusterGroup, ClusterLabel, PhraseNamer
from briefxai_clustering.pipeline import ClusteringPipeline, PipelineConfig
from tests.clustering.helpers import assert_consistent
from tests.clustering.synthetic import make_data

PIPELINE = ClusteringPipeline(PipelineConfig())


class RecordingNamer:
    """The phrase namer, remembering every text and vector it was shown."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.vectors: list[FloatArray] = []
        self.inner = PhraseNamer()

    def name(
        self, texts: Sequence[str], vectors: FloatArray, levels: Sequence[Sequence[ClusterGroup]]
    ) -> dict[str, ClusterLabel]:
        self.seen.extend(texts)
        self.vectors.append(vectors)
        return self.inner.name(texts, vectors, levels)


def request(n: int = 300, centers: int = 5, **kwargs: object) -> ClusteringInput:
    data = make_data(n, centers=centers, **kwargs)  # type: ignore[arg-type]
    return ClusteringInput(data.vectors, data.ids, data.user_ids, data.texts)


def test_recovers_planted_clusters_and_builds_a_consistent_tree() -> None:
    data = make_data(600, centers=6, dim=32, seed=9)
    inputs = ClusteringInput(data.vectors, data.ids, data.user_ids, data.texts)
    params = ClusteringParams(k=6, seed=4, max_top_clusters=3, skip_map=True)
    result = PIPELINE.run(inputs, params)
    assert_consistent(result, inputs, params)
    assert result.k == 6 and result.base_algorithm == "kmeans"
    assert adjusted_rand_score(data.labels, [a.cluster_id for a in result.assignments]) > 0.95
    assert sorted({c.level for c in result.clusters}) == [0, 1]
    assert len([c for c in result.clusters if c.level == 1]) == 3
    names = {c.name for c in result.clusters if c.level == 0}
    assert any(name.lower().startswith(("password", "login", "reset", "account", "locked")) for name in names)


def test_automatic_k_and_default_hierarchy() -> None:
    inputs = request(1_000, centers=8, dim=16, seed=2)
    params = ClusteringParams(seed=1, skip_map=True)
    result = PIPELINE.run(inputs, params)
    assert result.k == 32
    assert result.k_rule == "auto: round(sqrt(n)) = round(sqrt(1000)) = 32"
    assert_consistent(result, inputs, params)
    assert len([c for c in result.clusters if not c.parent_id]) <= params.max_top_clusters


def test_withheld_conversations_get_no_cluster_no_point_and_no_text_in_names() -> None:
    data = make_data(200, centers=4, dim=16, seed=5)
    secret = data.labels == 0  # one planted topic, all from one person: fails min_distinct_users
    user_ids = ["solo" if s else u for s, u in zip(secret, data.user_ids, strict=True)]
    texts = [
        f"zyzzyva secretword{i} {t}" if s else t
        for i, (s, t) in enumerate(zip(secret, data.texts, strict=True))
    ]
    inputs = ClusteringInput(data.vectors, data.ids, user_ids, texts)
    params = ClusteringParams(
        k=4, seed=3, min_cluster_size=5, min_distinct_users=3, merge_small_clusters=False
    )
    namer = RecordingNamer()
    result = ClusteringPipeline(PipelineConfig(), namer).run(inputs, params)
    assert_consistent(result, inputs, params)
    assert result.withheld_count == int(secret.sum())
    withheld = {a.conversation_id for a in result.assignments if a.withheld}
    assert withheld == {data.ids[i] for i in np.flatnonzero(secret)}
    assert not withheld & {p.conversation_id for p in result.points}
    assert not any("zyzzyva" in t or "secretword" in t for t in namer.seen)
    shown_vectors = np.concatenate(namer.vectors)
    assert len(shown_vectors) == len(namer.seen) == len(data.ids) - result.withheld_count
    secret_vectors = data.vectors[secret] / np.linalg.norm(data.vectors[secret], axis=1, keepdims=True)
    assert float((shown_vectors @ secret_vectors.T).max()) < 0.9999  # no withheld vector either
    shown = " ".join(f"{c.name} {c.description} {' '.join(c.keywords)}" for c in result.clusters)
    assert "zyzzyva" not in shown and "secretword" not in shown
    assert "1 withheld" in result.k_rule


def test_small_clusters_are_merged_when_merging_is_on() -> None:
    inputs = request(120, centers=3, dim=16, seed=6)
    params = ClusteringParams(k=12, seed=0, min_cluster_size=15, min_distinct_users=1, skip_map=True)
    result = PIPELINE.run(inputs, params)
    assert_consistent(result, inputs, params)
    assert result.withheld_count == 0
    assert "small clusters merged" in result.k_rule
    assert result.k == 12
    assert len([c for c in result.clusters if c.level == 0]) < 12


def test_everything_withheld_when_thresholds_exceed_the_input() -> None:
    inputs = request(30, centers=2, dim=8, seed=1)
    params = ClusteringParams(seed=0, min_cluster_size=31)
    result = PIPELINE.run(inputs, params)
    assert result.clusters == [] and result.points == []
    assert result.withheld_count == 30
    assert all(a.withheld and a.cluster_id == "" for a in result.assignments)
    assert result.map_algorithm == "none"


def test_tiny_input_uses_pca_and_skip_map_skips_it() -> None:
    inputs = request(12, centers=2, dim=8, seed=1)
    params = ClusteringParams(seed=0, min_cluster_size=2, min_distinct_users=1)
    result = PIPELINE.run(inputs, params)
    assert result.map_algorithm == "pca"
    assert_consistent(result, inputs, params)
    skipped = PIPELINE.run(
        inputs, ClusteringParams(seed=0, min_cluster_size=2, min_distinct_users=1, skip_map=True)
    )
    assert skipped.points == [] and skipped.map_algorithm == "none"


def test_identical_vectors_give_one_cluster() -> None:
    vectors = np.tile(np.array([[3.0, 4.0, 0.0]], dtype=np.float32), (20, 1))
    inputs = ClusteringInput(vectors, [f"id{i}" for i in range(20)])
    params = ClusteringParams(seed=0)
    result = PIPELINE.run(inputs, params)
    assert result.k == 1
    assert "clamped to 1 (distinct vectors)" in result.k_rule
    assert_consistent(result, inputs, params)
    assert [c.name for c in result.clusters] == ["Cluster L0-0"]


def test_explicit_k_above_n_is_clamped() -> None:
    inputs = request(10, centers=2, dim=4, seed=0)
    params = ClusteringParams(k=50, seed=0, min_cluster_size=1, min_distinct_users=1, skip_map=True)
    result = PIPELINE.run(inputs, params)
    assert result.k == 10
    assert result.k_rule == "requested: k=50, clamped to 10 (distinct vectors; n=10)"
    assert_consistent(result, inputs, params)


def test_vectors_are_normalised_so_scale_does_not_matter() -> None:
    data = make_data(150, centers=3, dim=8, seed=8)
    scales = np.random.default_rng(0).uniform(0.001, 1000, size=(150, 1)).astype(np.float32)
    params = ClusteringParams(seed=2, skip_map=True)
    unit = PIPELINE.run(ClusteringInput(data.vectors, data.ids, data.user_ids, data.texts), params)
    scaled = PIPELINE.run(ClusteringInput(data.vectors * scales, data.ids, data.user_ids, data.texts), params)
    assert (
        adjusted_rand_score(
            [a.cluster_id for a in unit.assignments], [a.cluster_id for a in scaled.assignments]
        )
        == 1.0
    )


def test_timings_cover_every_stage() -> None:
    result = PIPELINE.run(request(60, centers=2, dim=8), ClusteringParams(seed=0, skip_map=True))
    assert set(result.timings) == {"prepare", "base", "privacy", "hierarchy", "naming", "map"}
    assert all(seconds >= 0 for seconds in result.timings.values())
