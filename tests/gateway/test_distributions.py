"""Facet distributions per cluster (briefxai_gateway.distributions)."""

from __future__ import annotations

import math

from briefxai_gateway.distributions import MAX_TEXT_LABELS, DistributionBuilder, number_bucket
from briefxai_gateway.models import ClusterNode, FacetDefinition, FacetType

DEFINITIONS = {
    "request": FacetDefinition("request", FacetType.TEXT),
    "task": FacetDefinition("task", FacetType.ENUM, choices=("coding", "writing", "other")),
    "language": FacetDefinition("language", FacetType.TEXT),
    "sentiment": FacetDefinition("sentiment", FacetType.NUMBER, min=-1.0, max=1.0),
    "concerning": FacetDefinition("concerning", FacetType.NUMBER, min=1.0, max=5.0),
    "turns": FacetDefinition("turns", FacetType.NUMBER, min=0.0, max=math.inf),
}


def node(cid: str, level: int, parent: str = "") -> ClusterNode:
    return ClusterNode(cid, level, parent, [], cid, "", 0, 0, [])


TREE = [node("L0-0", 0, "L1-0"), node("L0-1", 0, "L1-0"), node("L0-2", 0, ""), node("L1-0", 1)]


def by_facet(items: list) -> dict:
    return {d.facet: d for d in items}


def test_buckets() -> None:
    sentiment = DEFINITIONS["sentiment"]
    assert [number_bucket(sentiment, v) for v in (-0.5, 0.0, 0.04, 0.9)] == [
        "negative",
        "neutral",
        "neutral",
        "positive",
    ]
    concerning = DEFINITIONS["concerning"]
    assert [number_bucket(concerning, v) for v in (1, 2.4, 2.6, 5, 9)] == ["1", "2", "3", "5", "5"]
    turns = DEFINITIONS["turns"]
    assert [number_bucket(turns, v) for v in (0, 1, 2, 3, 4, 7, 8, 100)] == [
        "0",
        "1",
        "2-3",
        "2-3",
        "4-7",
        "4-7",
        "8-15",
        "64-127",
    ]


def test_counts_means_and_roll_up() -> None:
    builder = DistributionBuilder(DEFINITIONS)
    rows = [
        ("L0-0", "task", "coding", None),
        ("L0-0", "task", "coding", None),
        ("L0-1", "task", "writing", None),
        ("L0-2", "task", "other", None),
        ("L0-0", "sentiment", None, -0.6),
        ("L0-1", "sentiment", None, 0.5),
        ("L0-0", "concerning", None, 1.0),
        ("L0-1", "concerning", None, 4.0),
        ("L0-0", "language", "en", None),
        ("L0-1", "language", "de", None),
        ("L0-0", "request", "Fix my code", None),
        ("", "task", "coding", None),  # withheld: counted nowhere
    ]
    builder.add_many(rows)
    result = builder.build(TREE)
    base = by_facet(result["L0-0"])
    assert base["task"].counts == {"coding": 2}
    assert base["task"].mean is None
    assert "request" not in base
    assert base["sentiment"].counts == {"negative": 1, "neutral": 0, "positive": 0}
    assert base["sentiment"].mean == -0.6
    assert base["concerning"].counts == {"1": 1, "2": 0, "3": 0, "4": 0, "5": 0}
    top = by_facet(result["L1-0"])
    assert top["task"].counts == {"coding": 2, "writing": 1}
    assert top["language"].counts == {"en": 1, "de": 1}
    assert top["sentiment"].counts == {"negative": 1, "neutral": 0, "positive": 1}
    assert math.isclose(top["sentiment"].mean or 0.0, -0.05)
    assert math.isclose(top["concerning"].mean or 0.0, 2.5)
    other = by_facet(result["L0-2"])
    assert other["task"].counts == {"other": 1}
    # Number facets report their buckets even where no value fell.
    assert other["sentiment"].counts == {"negative": 0, "neutral": 0, "positive": 0}
    assert other["sentiment"].mean is None


def test_free_text_facets_with_many_values_are_skipped() -> None:
    builder = DistributionBuilder(DEFINITIONS)
    for i in range(MAX_TEXT_LABELS + 1):
        builder.add("L0-0", "language", f"x{i}", None)
    builder.add("L0-0", "task", "coding", None)
    result = builder.build(TREE)
    assert set(by_facet(result["L0-0"])) == {"task"}


def test_unknown_facets_are_inferred_from_their_values() -> None:
    builder = DistributionBuilder({})
    builder.add("L0-0", "custom_score", None, 3.0)
    builder.add("L0-0", "custom_label", "a", None)
    result = by_facet(DistributionBuilder.build(builder, TREE)["L0-0"])
    assert result["custom_score"].counts == {"2-3": 1}
    assert result["custom_score"].mean == 3.0
    assert result["custom_label"].counts == {"a": 1}
