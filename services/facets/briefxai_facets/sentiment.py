"""The user's tone with VADER (``vaderSentiment``): a number in -1..1.

The user's first and last messages (the ask and how it ended; the first ``max_chars_per_message`` =
250 characters of each) get VADER's ``compound`` score; the facet is their mean weighted by length, so
a long complaint outweighs a short "thanks". Scoring only these two bounds the cost per conversation.
VADER's lexicon is English (with emoticons and emoji), so other languages mostly score near 0.
"""

from __future__ import annotations

from collections.abc import Sequence

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer


class SentimentScorer:
    def __init__(self, max_chars_per_message: int = 250) -> None:
        self._analyzer = SentimentIntensityAnalyzer()
        self.max_chars_per_message = max_chars_per_message

    def score(self, user_texts: Sequence[str]) -> float:
        """Length-weighted mean compound score of the first and last non-empty user messages."""
        texts = [t for t in user_texts if t.strip()]
        total = 0.0
        weight = 0.0
        for text in texts[:1] + texts[-1:] if len(texts) > 1 else texts:
            text = text[: self.max_chars_per_message]
            compound = float(self._analyzer.polarity_scores(text)["compound"])
            w = float(len(text))
            total += compound * w
            weight += w
        if weight == 0.0:
            return 0.0
        return max(-1.0, min(1.0, total / weight))
