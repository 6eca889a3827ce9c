"""Privacy thresholds: no reported cluster is small or shaped by only a few people.

Rule, applied to the base (k-means) clusters before anything is named or mapped:

- A cluster *passes* when it has at least ``min_cluster_size`` conversations (default 5) **and** at least
  ``min_distinct_users`` distinct user ids (default 3). Five is the smallest group size commonly used for
  k-anonymity-style releases; three distinct users means no reported cluster is essentially one or two
  people's conversations even when each of them wrote many.
- A conversation with an empty user id counts as a distinct user of its own (we cannot tell who wrote
  it, so it is never assumed to share a user with anything). Without user ids, distinct users = size.
- A failing cluster is merged into the passing cluster whose centroid is nearest by cosine (ties: lowest
  cluster index). When no cluster passes, or merging is off (``merge_small_clusters: false``), its
  conversations are *withheld*: no cluster id, no map point, and their texts are never shown to the namer.
- Higher levels group whole base clusters, so each parent has at least the size and the distinct users
  of any of its children: they pass whenever their children pass. ``check_thresholds`` verifies that for
  every reported node anyway (the pipeline calls it on every level).

Words are held to the same rule as clusters (:func:`mask_rare_words`): before the namer sees the texts of
reported conversations, every word (a whitespace-separated token, compared without surrounding
punctuation and case) written by fewer than ``min_distinct_users`` distinct users of those texts is
replaced by "…". A passing cluster can hold a merged small group, or one person's many conversations;
this keeps what only they wrote (a name, an order number, a pasted identifier) out of every keyword, name,
quoted example and LLM prompt.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from briefxai_clustering.base_clusters import compact_labels
from briefxai_clustering.model import FloatArray, IntArray

WITHHELD = -1
MASK = "…"
_TOKEN = re.compile(r"\S+")
_EDGE_PUNCTUATION = ".,;:!?()[]{}<>\"'`«»“”‘’…*_-"


@dataclass(frozen=True)
class PrivacyRule:
    min_cluster_size: int = 5
    min_distinct_users: int = 3
    merge_small: bool = True


@dataclass(frozen=True)
class PrivacyOutcome:
    labels: IntArray  # reported base cluster per conversation (0..n_clusters-1) or WITHHELD (-1)
    n_clusters: int
    merged_clusters: int  # failing clusters merged into a passing one
    withheld_clusters: int  # failing clusters withheld
    withheld_count: int  # conversations withheld


class PrivacyViolation(RuntimeError):
    """A node about to be reported does not satisfy the thresholds: a bug, never a user error."""


def user_codes(user_ids: Sequence[str], n: int) -> IntArray:
    """One integer per distinct user; an empty (or absent) user id gets a code of its own."""
    codes = np.empty(n, dtype=np.int64)
    known: dict[str, int] = {}
    next_code = 0
    for i in range(n):
        user = user_ids[i] if user_ids else ""
        if user:
            code = known.get(user)
            if code is None:
                code = known[user] = next_code
                next_code += 1
        else:
            code = next_code
            next_code += 1
        codes[i] = code
    return codes


def distinct_users(labels: IntArray, codes: IntArray, n_clusters: int) -> IntArray:
    """Distinct user codes per cluster 0..n_clusters-1 (entries with a negative label are ignored)."""
    keep = labels >= 0
    if not keep.any():
        return np.zeros(n_clusters, dtype=np.int64)
    width = int(codes.max()) + 1
    pairs = np.unique(labels[keep] * width + codes[keep])
    return np.bincount(pairs // width, minlength=n_clusters).astype(np.int64)


def passing_mask(sizes: IntArray, users: IntArray, rule: PrivacyRule) -> np.ndarray:
    return (sizes >= rule.min_cluster_size) & (users >= rule.min_distinct_users)


def apply_privacy(
    labels: IntArray, centroids: FloatArray, codes: IntArray, rule: PrivacyRule
) -> PrivacyOutcome:
    """Merges or withholds the base clusters that fail ``rule``; labels must be 0..k-1, all non-empty."""
    k = centroids.shape[0]
    sizes = np.bincount(labels, minlength=k)
    users = distinct_users(labels, codes, k)
    passing = passing_mask(sizes, users, rule)
    failing = np.flatnonzero(~passing)
    target = np.arange(k, dtype=np.int64)
    merged = withheld_clusters = 0
    if failing.size:
        passing_ids = np.flatnonzero(passing)
        if rule.merge_small and passing_ids.size:
            similarity = centroids[failing] @ centroids[passing_ids].T
            target[failing] = passing_ids[np.argmax(similarity, axis=1)]
            merged = int(failing.size)
        else:
            target[failing] = WITHHELD
            withheld_clusters = int(failing.size)
    mapped = target[labels]
    reported = mapped >= 0
    out = np.full(len(labels), WITHHELD, dtype=np.int64)
    n_clusters = 0
    if reported.any():
        out[reported], n_clusters = compact_labels(mapped[reported])
    outcome = PrivacyOutcome(
        labels=out,
        n_clusters=n_clusters,
        merged_clusters=merged,
        withheld_clusters=withheld_clusters,
        withheld_count=int((~reported).sum()),
    )
    final_sizes = np.bincount(out[reported], minlength=n_clusters)
    check_thresholds(final_sizes, distinct_users(out, codes, n_clusters), rule, level=0)
    return outcome


def check_thresholds(sizes: IntArray, users: IntArray, rule: PrivacyRule, *, level: int) -> None:
    """Raises PrivacyViolation when any cluster of ``level`` is under a threshold."""
    bad = np.flatnonzero(~passing_mask(sizes, users, rule))
    if bad.size:
        i = int(bad[0])
        raise PrivacyViolation(
            f"level {level} cluster {i} has size {int(sizes[i])} and {int(users[i])} distinct users; "
            f"thresholds are {rule.min_cluster_size} and {rule.min_distinct_users}"
        )


def _word_key(token: str) -> str:
    return token.strip(_EDGE_PUNCTUATION).casefold()


def mask_rare_words(texts: Sequence[str], codes: IntArray, min_users: int) -> list[str]:
    """``texts`` with each word written by fewer than ``min_users`` distinct users (``codes[i]`` is the
    user of ``texts[i]``) replaced by ``MASK``; leading and trailing punctuation is kept."""
    if min_users <= 1:
        return list(texts)
    writers: dict[str, set[int]] = {}
    for text, code in zip(texts, codes.tolist(), strict=True):
        for token in _TOKEN.findall(text):
            key = _word_key(token)
            if key:
                users = writers.setdefault(key, set())
                if len(users) < min_users:
                    users.add(code)
    rare = {key for key, users in writers.items() if len(users) < min_users}
    if not rare:
        return list(texts)

    def mask(match: re.Match[str]) -> str:
        token = match.group(0)
        key = _word_key(token)
        if key not in rare:
            return token
        core = token.strip(_EDGE_PUNCTUATION)
        start = token.find(core)
        return token[:start] + MASK + token[start + len(core) :]

    return [_TOKEN.sub(mask, text) for text in texts]
