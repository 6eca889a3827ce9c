"""Offline names: c-TF-IDF keywords, collocations, names, descriptions, fallbacks, uniqueness."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from briefxai_clustering.naming import (
    ClusterGroup,
    KeywordNamer,
    collocations,
    distinct_terms,
    join_phrase,
    trim_text,
)


def group(cluster_id: str, members: Sequence[int], level: int = 0) -> ClusterGroup:
    return ClusterGroup(
        cluster_id=cluster_id,
        level=level,
        size=len(members),
        members=np.asarray(members, dtype=np.int64),
        weights=np.ones(len(members)),
    )


PASSWORD = [
    "I need a password reset for my login",
    "password reset link does not arrive",
    "cannot login after password reset",
    "password reset email never came",
]
BILLING = [
    "refund for a double charge on my invoice",
    "invoice shows the wrong charge",
    "how do I get a refund",
    "charge on my card after I cancelled",
]


def test_keywords_contrast_clusters_and_name_uses_collocations() -> None:
    texts = PASSWORD + BILLING
    labels = KeywordNamer().name(texts, [[group("L0-0", range(4)), group("L0-1", range(4, 8))]])
    password, billing = labels["L0-0"], labels["L0-1"]
    assert password.keywords[0] == "password reset"
    assert "login" in password.keywords
    assert password.name.startswith("Password reset / login")
    assert billing.keywords[0] in {"charge", "refund", "invoice"}
    assert not set(password.keywords) & set(billing.keywords)
    assert password.description.startswith("Conversations about password reset, login")
    assert "e.g. '" in password.description


def test_description_quotes_the_most_central_member_trimmed() -> None:
    long_text = "password reset " + "x" * 300
    namer = KeywordNamer(max_quote_chars=40)
    labels = namer.name([*PASSWORD, long_text], [[group("L0-0", [4, 0, 1, 2, 3])]])
    quote = labels["L0-0"].description.split("e.g. '")[1].rstrip("'.")
    assert quote.startswith("password reset")
    assert len(quote) <= 40
    assert quote.endswith("…")


def test_central_member_with_empty_text_is_skipped_for_the_quote() -> None:
    labels = KeywordNamer().name(["", "  ", "help with my garden tomato"], [[group("L0-0", [0, 1, 2])]])
    assert "e.g. 'help with my garden tomato'" in labels["L0-0"].description


def test_no_texts_or_only_stop_words_give_a_plain_fallback() -> None:
    for texts in (["", "", ""], ["the and of", "is it", "a"]):
        labels = KeywordNamer().name(texts, [[group("L0-0", [0, 1]), group("L0-1", [2])]])
        assert labels["L0-0"].name == "Cluster L0-0"
        assert labels["L0-0"].keywords == ()
        assert "gave no keywords" in labels["L0-1"].description


def test_names_are_unique_within_a_level() -> None:
    texts = ["garden tomato soil"] * 4
    labels = KeywordNamer().name(texts, [[group("L0-0", [0, 1]), group("L0-1", [2, 3])]])
    assert labels["L0-0"].name != labels["L0-1"].name


def test_weights_stand_for_unsampled_members() -> None:
    texts = ["garden tomato", "poem sonnet", "garden soil", "poem sonnet"]
    weighted = ClusterGroup("L1-0", 1, 102, np.array([0, 1, 2, 3]), np.array([1.0, 50.0, 1.0, 50.0]))
    labels = KeywordNamer().name(texts, [[weighted]])
    assert labels["L1-0"].keywords[0] == "poem sonnet"
    heavy_garden = ClusterGroup("L1-0", 1, 102, np.array([0, 1, 2, 3]), np.array([50.0, 1.0, 50.0, 1.0]))
    assert KeywordNamer().name(texts, [[heavy_garden]])["L1-0"].keywords[0] == "garden"


def test_every_level_is_named_against_its_own_siblings() -> None:
    texts = PASSWORD + BILLING
    base = [group("L0-0", [0, 1]), group("L0-1", [2, 3]), group("L0-2", range(4, 8))]
    top = [group("L1-0", range(8), level=1)]
    labels = KeywordNamer().name(texts, [base, top])
    assert set(labels) == {"L0-0", "L0-1", "L0-2", "L1-0"}
    assert labels["L1-0"].keywords


def test_distinct_terms_drops_redundant_terms_and_prefers_collocations() -> None:
    ranked = ["password", "reset", "password reset", "login", "reset", "account", "email"]
    assert distinct_terms(ranked, 3) == ["password reset", "login", "account"]
    assert distinct_terms(["a b", "a", "b", "c"], 2) == ["a b", "c"]


def test_collocations_keep_frequent_pairs_only() -> None:
    vocabulary = np.array(["fix", "fix resume", "password", "password reset", "reset", "resume"])
    totals = np.array([100, 3, 10, 9, 9, 50])
    kept = [str(vocabulary[i]) for i in collocations(vocabulary, totals)]
    assert "password reset" in kept
    assert "fix resume" not in kept
    rare = np.array([1, 1, 1, 1, 1, 1])  # seen once: no evidence of a collocation
    assert [str(vocabulary[i]) for i in collocations(vocabulary, rare)] == [
        "fix",
        "password",
        "reset",
        "resume",
    ]
    assert {"fix", "password", "reset", "resume"} <= set(kept)


def test_text_helpers() -> None:
    assert trim_text("  a   b\nc ", 10) == "a b c"
    assert trim_text("one two three four five", 12) == "one two…"
    assert join_phrase(["a"]) == "a"
    assert join_phrase(["a", "b", "c"]) == "a, b and c"
