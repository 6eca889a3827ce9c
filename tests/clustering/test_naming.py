"""Offline names: phrases picked against the centroid, MMR, names, descriptions, fallbacks, uniqueness."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from sklearn.feature_extraction.text import HashingVectorizer

from briefxai_clustering.model import FloatArray
from briefxai_clustering.naming import (
    ClusterGroup,
    PhraseNamer,
    join_phrase,
    mmr,
    refine,
    sub_phrases,
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


def embed(texts: Sequence[str]) -> FloatArray:
    """A stand-in for the embedding model: unit bag-of-words vectors (texts sharing words are close)."""
    hashed = HashingVectorizer(n_features=256, alternate_sign=False, norm="l2").transform(texts)
    vectors = np.asarray(hashed.toarray(), dtype=np.float32) + 1e-3
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def name(
    texts: Sequence[str], levels: Sequence[Sequence[ClusterGroup]], **kwargs: object
) -> dict[str, object]:
    return dict(PhraseNamer(**kwargs).name(texts, embed(texts), levels))  # type: ignore[arg-type]


PASSWORD = [
    "Hi, can you help me reset my password? The reset email never arrives.",
    "I forgot my password and my account is locked. Please reset my password!",
    "reset my password please, my account is locked after 5 tries",
    "Hello! How do I reset my password? The locked account says contact support.",
    "I need to reset my password, doesn't work, account is locked",
]
BILLING = [
    "I was charged twice for my subscription, I want a refund of $409.95",
    "Refund please: you charged me twice this month",
    "Why was I charged twice? I need a refund for the double charge on my invoice.",
    "Double charge on my card, please refund it",
    "charged twice again on invoice INV_2024_15, refund?",
]


def test_names_are_readable_phrases_contrasting_the_clusters() -> None:
    texts = PASSWORD + BILLING
    namer = PhraseNamer()
    labels = namer.name(texts, embed(texts), [[group("L0-0", range(5)), group("L0-1", range(5, 10))]])
    password, billing = labels["L0-0"], labels["L0-1"]
    assert password.keywords[0] == "reset password"
    assert "account locked" in password.keywords or "locked account" in password.keywords
    assert password.name.startswith("Reset password · ")
    assert "locked" in password.name.lower()
    assert {"charged twice", "refund", "double charge"} & set(billing.keywords[:2])
    assert not set(password.keywords) & set(billing.keywords)
    for label in (password, billing):
        assert "/" not in label.name
        assert not any(token in label.name.lower() for token in ("doesn", "409", "inv_", "please", "hi"))
        assert len(label.name) <= namer.max_name_chars
    assert password.description.startswith("Conversations about reset password and account locked; e.g. ")
    assert "e.g. '" in password.description


def test_mmr_prefers_a_different_phrase_to_a_near_duplicate() -> None:
    scores = np.array([1.0, 0.95, 0.8])
    similarity = np.array([[1.0, 0.98, 0.1], [0.98, 1.0, 0.15], [0.1, 0.15, 1.0]])
    blocked = np.eye(3, dtype=bool)
    assert mmr(scores, similarity, blocked, diversity=0.5, limit=3) == [0, 2, 1]
    assert mmr(scores, similarity, blocked, diversity=0.0, limit=3) == [0, 1, 2]
    clash = blocked.copy()
    clash[0, 2] = clash[2, 0] = True  # sharing a word: never both
    assert mmr(scores, similarity, clash, diversity=0.5, limit=3) == [0, 1]
    assert mmr(np.array([]), np.zeros((0, 0)), np.zeros((0, 0), dtype=bool), 0.5, 3) == []


def test_mmr_ties_keep_candidate_order() -> None:
    scores = np.array([0.5, 0.5, 0.5])
    similarity = np.zeros((3, 3))
    assert mmr(scores, similarity, np.eye(3, dtype=bool), diversity=0.3, limit=2) == [0, 1]


def test_namer_keywords_are_diverse() -> None:
    texts = [f"the pasta sauce recipe, garlic and basil {i}" for i in range(4)] + [
        "pasta sauce with garlic",
        "wine pairing for pasta dinner",
        "wine pairing with pasta",
        "which wine pairing for dinner",
    ]
    labels = PhraseNamer().name(texts, embed(texts), [[group("L0-0", range(8))]])
    keywords = labels["L0-0"].keywords
    assert any("wine" in k for k in keywords[:3])  # the second theme shows up early
    words = [w for k in keywords for w in k.split()]
    assert len(words) == len(set(words))  # no phrase repeats a word of another


def test_refine_prefers_a_longer_phrase_that_scores_nearly_as_well() -> None:
    phrases = ["password", "reset password", "account"]
    scores = np.array([1.0, 0.95, 0.8])
    blocked = np.array([[True, True, False], [True, True, False], [False, False, True]])
    assert refine([0, 2], phrases, scores, blocked) == [1, 2]
    assert refine([0, 2], phrases, np.array([1.0, 0.5, 0.8]), blocked) == [0, 2]
    assert sub_phrases("a b c") == ["a", "a b", "b", "b c", "c"]
    assert sub_phrases("a") == []


def test_names_are_written_as_members_write_the_words() -> None:
    texts = [
        "my favourite TV shows are comedies",
        "which TV shows do you watch",
        "old TV shows from the nineties",
        "TV shows or movies tonight?",
    ]
    labels = PhraseNamer().name(texts, embed(texts), [[group("L0-0", range(4))]])
    assert labels["L0-0"].name.startswith("TV shows")
    assert labels["L0-0"].keywords[0] == "tv shows"


def test_description_quotes_the_most_central_member_trimmed() -> None:
    long_text = "password reset " + "x" * 300
    texts = [*PASSWORD, long_text]
    labels = PhraseNamer(max_quote_chars=40).name(texts, embed(texts), [[group("L0-0", [5, 0, 1, 2, 3, 4])]])
    quote = labels["L0-0"].description.split("e.g. '")[1].rstrip("'.")
    assert quote.startswith("password reset")
    assert len(quote) <= 40
    assert quote.endswith("…")


def test_central_member_with_empty_text_is_skipped_for_the_quote() -> None:
    texts = ["", "  ", "help with my garden tomato"]
    labels = PhraseNamer().name(texts, embed(texts), [[group("L0-0", [0, 1, 2])]])
    assert "e.g. 'help with my garden tomato'" in labels["L0-0"].description


def test_no_texts_or_only_stop_words_give_a_plain_fallback() -> None:
    for texts in (["", "", ""], ["the and of", "is it", "a"], ["Hi! thanks lol", "ok 15 2x", "I'm doesn't"]):
        labels = PhraseNamer().name(texts, embed(texts), [[group("L0-0", [0, 1]), group("L0-1", [2])]])
        assert labels["L0-0"].name == "Cluster L0-0"
        assert labels["L0-0"].keywords == ()
        assert "gave no keywords" in labels["L0-1"].description


def test_names_are_unique_within_a_level() -> None:
    texts = ["garden tomato soil"] * 4
    labels = PhraseNamer().name(texts, embed(texts), [[group("L0-0", [0, 1]), group("L0-1", [2, 3])]])
    assert labels["L0-0"].name != labels["L0-1"].name


def test_weights_stand_for_unsampled_members() -> None:
    texts = ["garden tomato", "poem sonnet", "garden tomato", "poem sonnet", "garden soil", "poem rhyme"]
    members = np.arange(6)
    poems = ClusterGroup("L1-0", 1, 153, members, np.array([1.0, 50.0, 1.0, 50.0, 1.0, 50.0]))
    assert PhraseNamer().name(texts, embed(texts), [[poems]])["L1-0"].keywords[0] == "poem sonnet"
    gardens = ClusterGroup("L1-0", 1, 153, members, np.array([50.0, 1.0, 50.0, 1.0, 50.0, 1.0]))
    assert PhraseNamer().name(texts, embed(texts), [[gardens]])["L1-0"].keywords[0].startswith("garden")


def test_every_level_is_named_against_its_own_siblings() -> None:
    texts = PASSWORD + BILLING
    base = [group("L0-0", [0, 1, 2]), group("L0-1", [3, 4]), group("L0-2", range(5, 10))]
    top = [group("L1-0", range(10), level=1)]
    labels = PhraseNamer().name(texts, embed(texts), [base, top])
    assert set(labels) == {"L0-0", "L0-1", "L0-2", "L1-0"}
    assert labels["L1-0"].keywords


def test_same_input_same_names_whatever_the_member_order() -> None:
    texts = PASSWORD + BILLING
    vectors = embed(texts)
    levels = [[group("L0-0", range(5)), group("L0-1", range(5, 10))]]
    first = PhraseNamer().name(texts, vectors, levels)
    assert PhraseNamer().name(texts, vectors, levels) == first
    shuffled = [[group("L0-0", [4, 2, 0, 1, 3]), group("L0-1", [9, 7, 5, 6, 8])]]
    assert [first[k].keywords for k in first] == [
        v.keywords for v in PhraseNamer().name(texts, vectors, shuffled).values()
    ]


def test_diversity_is_validated() -> None:
    with pytest.raises(ValueError, match="diversity"):
        PhraseNamer(diversity=1.5)


def test_text_helpers() -> None:
    assert trim_text("  a   b\nc ", 10) == "a b c"
    assert trim_text("one two three four five", 12) == "one two…"
    assert join_phrase(["a"]) == "a"
    assert join_phrase(["a", "b", "c"]) == "a, b and c"
