"""VADER sentiment over the user's first and last messages."""

from __future__ import annotations

import pytest

from briefxai_facets.sentiment import SentimentScorer


@pytest.fixture(scope="module")
def scorer() -> SentimentScorer:
    return SentimentScorer()


def test_positive(scorer: SentimentScorer) -> None:
    assert scorer.score(["This is wonderful, thank you so much, I love it!"]) > 0.5


def test_negative(scorer: SentimentScorer) -> None:
    assert scorer.score(["This is terrible. I am furious, the product is broken and useless."]) < -0.5


def test_neutral_and_empty(scorer: SentimentScorer) -> None:
    assert scorer.score([]) == 0.0
    assert scorer.score(["   "]) == 0.0
    assert abs(scorer.score(["The invoice number is on the second page."])) < 0.2


def test_last_message_counts(scorer: SentimentScorer) -> None:
    opening = "My order has not arrived yet."
    happy = scorer.score([opening, "ok", "Great, that worked perfectly, thank you so much!"])
    angry = scorer.score([opening, "ok", "This is awful, I hate this, worst service ever."])
    assert happy > 0 > angry


def test_middle_messages_are_not_scored(scorer: SentimentScorer) -> None:
    first, last = "Where is my parcel?", "Fine."
    assert scorer.score([first, "I hate this so much, terrible!", last]) == scorer.score([first, last])
