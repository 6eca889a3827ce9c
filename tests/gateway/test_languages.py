"""Clusters that are mostly not in English carry their language in their name (languages.py)."""

from __future__ import annotations

from briefxai_gateway.languages import flag_languages, language_label
from briefxai_gateway.models import ClusterNode, FacetDistribution


def node(cluster_id: str, name: str) -> ClusterNode:
    return ClusterNode(cluster_id, 0, "", [], name, "", 10, 5, [])


def test_english_and_undetermined_clusters_are_not_flagged() -> None:
    assert language_label({"en": 9, "pt": 1}) == ""
    assert language_label({"und": 10}) == ""
    assert language_label({}) == ""
    assert language_label({"en": 5, "und": 20, "es": 4}) == ""


def test_one_dominant_language_is_named() -> None:
    assert language_label({"pt": 8, "en": 2}) == "Portuguese"
    assert language_label({"pt": 3, "und": 30, "en": 1}) == "Portuguese"
    assert language_label({"xx": 6, "en": 1}) == "xx"


def test_a_split_non_english_majority_is_mixed() -> None:
    assert language_label({"es": 4, "pt": 3, "fr": 2, "de": 1, "en": 2}) == "Mixed languages (es, fr, pt)"


def test_flag_languages_prefixes_names_once() -> None:
    clusters = [node("L0-0", "Obrigado / para"), node("L0-1", "Password reset")]
    distributions = {
        "L0-0": [FacetDistribution("language", {"pt": 7, "en": 1})],
        "L0-1": [FacetDistribution("language", {"en": 9})],
    }
    assert flag_languages(clusters, distributions) == 1
    assert flag_languages(clusters, distributions) == 0
    assert [c.name for c in clusters] == ["Portuguese: Obrigado / para", "Password reset"]
