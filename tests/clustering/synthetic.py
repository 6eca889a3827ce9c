"""Synthetic clustered conversations: planted topics as normalised blobs, with matching short texts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.datasets import make_blobs

TOPICS: tuple[tuple[str, ...], ...] = (
    ("password", "reset", "login", "account", "locked", "email"),
    ("invoice", "refund", "billing", "charge", "payment", "card"),
    ("python", "error", "traceback", "import", "module", "install"),
    ("recipe", "pasta", "sauce", "garlic", "dinner", "oven"),
    ("travel", "flight", "hotel", "booking", "visa", "airport"),
    ("resume", "interview", "job", "salary", "career", "offer"),
    ("garden", "tomato", "soil", "seeds", "watering", "compost"),
    ("poem", "rhyme", "verse", "stanza", "metaphor", "sonnet"),
    ("workout", "running", "muscle", "stretching", "cardio", "gym"),
    ("mortgage", "loan", "interest", "rate", "lender", "deposit"),
    ("guitar", "chords", "strumming", "tuning", "song", "capo"),
    ("database", "query", "index", "postgres", "table", "join"),
)
TEMPLATES = (
    "how do I fix my {0} {1} problem",
    "question about {0} and {2}",
    "help with {1} {2} please",
    "my {0} {3} is not working",
    "need advice on {2} {3} and {0}",
    "what is the best way to handle {1} {3}",
)


@dataclass(frozen=True)
class SyntheticData:
    vectors: np.ndarray  # (n, dim) float32, unit rows
    labels: np.ndarray  # planted topic per row
    ids: list[str]
    user_ids: list[str]
    texts: list[str]


def topic_words(topic: int) -> tuple[str, ...]:
    words = TOPICS[topic % len(TOPICS)]
    suffix = "" if topic < len(TOPICS) else str(topic // len(TOPICS))
    return tuple(word + suffix for word in words)


def make_data(
    n: int,
    centers: int = 6,
    dim: int = 32,
    seed: int = 0,
    cluster_std: float = 1.0,
    users: int | None = None,
) -> SyntheticData:
    """``n`` conversations around ``centers`` planted topics; user ids cycle over ``users`` (default n/3)."""
    x, y = make_blobs(
        n_samples=n,
        n_features=dim,
        centers=centers,
        cluster_std=cluster_std,
        center_box=(-10, 10),
        random_state=seed,
    )
    vectors = x.astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    texts = []
    for topic in y:
        words = list(topic_words(int(topic)))
        rng.shuffle(words)
        texts.append(TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(*words))
    n_users = users if users is not None else max(1, n // 3)
    return SyntheticData(
        vectors=vectors,
        labels=np.asarray(y),
        ids=[f"c{i:06d}" for i in range(n)],
        user_ids=[f"u{i % n_users}" for i in range(n)],
        texts=texts,
    )
