"""Clustering settings: defaults, YAML section, BRIEFXAI_CLUSTERING_* overrides, and request defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from briefxai_clustering.settings import ClusteringSettings
from briefxai_clustering.validation import RequestedParams, resolve_params
from briefxai_common.config import ConfigError
from briefxai_common.errors import InvalidArgument


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRIEFXAI_CONFIG", raising=False)
    settings = ClusteringSettings.load()
    assert (settings.grpc_port, settings.http_port) == (50054, 9094)
    assert settings.minibatch_threshold == 20_000
    assert settings.umap_sample_size == 10_000
    assert settings.max_vectors == 200_000
    assert (settings.default_min_cluster_size, settings.default_min_distinct_users) == (5, 3)
    assert settings.default_max_top_clusters == 10
    assert settings.max_message_mb == 400
    assert settings.compute_threads == 1
    assert settings.resolved_compute_threads() == 1
    assert ClusteringSettings.load(compute_threads=0).resolved_compute_threads() >= 1


def test_yaml_section_and_env_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "briefxai.yaml"
    config.write_text("clustering:\n  minibatch_threshold: 5000\n  max_k: 50\n")
    monkeypatch.setenv("BRIEFXAI_CONFIG", str(config))
    monkeypatch.setenv("BRIEFXAI_CLUSTERING_MAX_K", "80")
    monkeypatch.setenv("BRIEFXAI_CLUSTERING_MERGE_SMALL_CLUSTERS", "false")
    settings = ClusteringSettings.load()
    assert settings.minibatch_threshold == 5000
    assert settings.max_k == 80
    assert settings.merge_small_clusters is False


def test_invalid_values_name_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRIEFXAI_CONFIG", raising=False)
    monkeypatch.setenv("BRIEFXAI_CLUSTERING_UMAP_SAMPLE_SIZE", "10")
    with pytest.raises(ConfigError, match=r"clustering\.umap_sample_size"):
        ClusteringSettings.load()


def test_unset_params_take_server_defaults() -> None:
    settings = ClusteringSettings.load(default_hierarchy_depth=3, merge_small_clusters=False)
    params = resolve_params(RequestedParams(seed=9), settings)
    assert params.k == 0
    assert params.hierarchy_depth == 3
    assert params.max_top_clusters == 10
    assert (params.min_cluster_size, params.min_distinct_users) == (5, 3)
    assert params.seed == 9 and params.merge_small_clusters is False
    explicit = resolve_params(RequestedParams(k=7, min_cluster_size=1, max_top_clusters=4), settings)
    assert (explicit.k, explicit.min_cluster_size, explicit.max_top_clusters) == (7, 1, 4)
    with pytest.raises(InvalidArgument) as error:
        resolve_params(RequestedParams(k=settings.max_k + 1), settings)
    assert error.value.violations[0].field == "params.k"


@pytest.mark.parametrize(
    ("requested", "field"),
    [
        (RequestedParams(k=0), "params.k"),
        (RequestedParams(k=1), "params.k"),
        (RequestedParams(min_cluster_size=0), "params.min_cluster_size"),
        (RequestedParams(min_distinct_users=0), "params.min_distinct_users"),
        (RequestedParams(max_top_clusters=0), "params.max_top_clusters"),
    ],
)
def test_set_params_out_of_range_are_refused(requested: RequestedParams, field: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        resolve_params(requested, ClusteringSettings.load())
    assert [v.field for v in error.value.violations] == [field]


def test_an_explicit_zero_depth_means_the_base_level_only() -> None:
    settings = ClusteringSettings.load(default_hierarchy_depth=3)
    assert resolve_params(RequestedParams(hierarchy_depth=0), settings).hierarchy_depth == 0
