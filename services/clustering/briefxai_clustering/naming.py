"""Cluster names and descriptions, offline: class-based TF-IDF keywords plus the most central text.

``Namer`` is the seam: the pipeline hands a namer texts of *reported* conversations only (never a withheld
one) and the groups of every level; an LLM namer can implement the same protocol later. For speed the
pipeline passes at most ``naming_texts_per_cluster`` texts per base cluster (its most central members),
each weighted by how many conversations it stands for.

``KeywordNamer`` (the default):

- Keywords: one ``CountVectorizer`` (English stop words, unigrams and bigrams) over the given texts,
  keeping only bigrams that are collocations (``collocations``), then per level the class-based TF-IDF of BERTopic: the term counts of each cluster's texts ``c[t]``,
  ``tf = c[t] / sum(c)``, ``idf = log(1 + A / f[t])`` with ``A`` the average number of terms per cluster
  and ``f[t]`` the term's count over all clusters of that level. Best first; ties alphabetical. A term
  whose words are all in a better one is dropped ("password" after "password reset"), and a bigram
  replaces a better unigram it contains.
- Name: the top ``name_keywords`` keywords joined with " / ", first letter capitalised:
  "Password reset / login / locked account". Names are made unique within a level by adding the next
  keyword, else the cluster id.
- Description: "Conversations about password reset, login and locked account; e.g. '<text of the
  member nearest the centroid, trimmed>'."
- No texts (or only stop words): "Cluster L0-3" and a description saying so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer

from briefxai_clustering.model import IntArray

_SPACE = re.compile(r"\s+")
BIGRAM_MIN_SHARE = 0.3
BIGRAM_MIN_COUNT = 2


@dataclass(frozen=True)
class ClusterGroup:
    """One cluster to name: its members as indices into the namer's ``texts``.

    For a large cluster ``members`` may be a sample (the pipeline gives the most central members of each
    base cluster); ``weights[j]`` is how many conversations ``members[j]`` stands for, so that weighted
    term counts estimate the whole cluster's.
    """

    cluster_id: str
    level: int
    size: int  # conversations in the cluster
    members: IntArray  # most central first (cosine to the cluster's centroid, descending)
    weights: npt.NDArray[np.float64]  # one per member; all 1.0 when every member is given
    child_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterLabel:
    name: str
    description: str
    keywords: tuple[str, ...] = field(default_factory=tuple)


class Namer(Protocol):
    """Names every cluster of every level at once (so that each level can be contrasted as a whole)."""

    def name(self, texts: Sequence[str], levels: Sequence[Sequence[ClusterGroup]]) -> dict[str, ClusterLabel]:
        """``texts`` are the reported conversations' texts; ``levels[0]`` is the base level."""
        ...


def trim_text(text: str, limit: int) -> str:
    """Whitespace collapsed, cut at a word boundary to at most ``limit`` characters (with an ellipsis)."""
    text = _SPACE.sub(" ", text).strip()
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - 1)]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "…"


def distinct_terms(ranked: Sequence[str], limit: int) -> list[str]:
    """Best ``limit`` terms without redundancy: a term adding no new word is skipped; a term containing
    all words of an earlier one replaces it (keeping the earlier one's rank). Stops at ``limit``."""
    chosen: list[str] = []
    for term in ranked:
        words = set(term.split())
        contained = [i for i, c in enumerate(chosen) if set(c.split()) < words]
        if contained:
            chosen[contained[0]] = term
            for i in reversed(contained[1:]):
                del chosen[i]
            continue
        covered: set[str] = set()
        for c in chosen:
            covered.update(c.split())
        if words <= covered:
            continue
        chosen.append(term)
        if len(chosen) == limit:
            break
    return chosen


def collocations(vocabulary: np.ndarray, totals: np.ndarray) -> IntArray:
    """Indices of the terms to keep: every unigram, and the bigrams that are real collocations.

    A bigram is kept when it occurs at least ``BIGRAM_MIN_COUNT`` times and accounts for at least
    ``BIGRAM_MIN_SHARE`` of the occurrences of its rarer word ("password reset" in support chats), not
    when two words merely happen to be adjacent ("resume problem" from "how do I fix my resume problem").
    """
    index = {str(term): i for i, term in enumerate(vocabulary)}
    keep: list[int] = []
    for i, term in enumerate(vocabulary):
        words = str(term).split()
        if len(words) == 1:
            keep.append(i)
            continue
        rarer = min(totals[index[w]] if w in index else 0 for w in words)
        if totals[i] >= BIGRAM_MIN_COUNT and totals[i] >= BIGRAM_MIN_SHARE * rarer:
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def join_phrase(terms: Sequence[str]) -> str:
    if len(terms) <= 1:
        return "".join(terms)
    return ", ".join(terms[:-1]) + " and " + terms[-1]


class KeywordNamer:
    """Offline names from c-TF-IDF keywords and the most central member's text."""

    def __init__(
        self, keywords_per_cluster: int = 8, name_keywords: int = 3, max_quote_chars: int = 100
    ) -> None:
        self.keywords_per_cluster = keywords_per_cluster
        self.name_keywords = name_keywords
        self.max_quote_chars = max_quote_chars

    def name(self, texts: Sequence[str], levels: Sequence[Sequence[ClusterGroup]]) -> dict[str, ClusterLabel]:
        counts, vocabulary = self._term_counts(texts)
        labels: dict[str, ClusterLabel] = {}
        for groups in levels:
            keywords = self._level_keywords(counts, vocabulary, groups)
            names = self._unique_names(groups, keywords)
            for group, terms, name in zip(groups, keywords, names, strict=True):
                labels[group.cluster_id] = ClusterLabel(
                    name=name,
                    description=self._description(texts, group, terms),
                    keywords=tuple(terms[: self.keywords_per_cluster]),
                )
        return labels

    @staticmethod
    def _term_counts(texts: Sequence[str]) -> tuple[sparse.csr_matrix | None, np.ndarray]:
        if not any(t.strip() for t in texts):
            return None, np.array([], dtype=object)
        vectorizer = CountVectorizer(stop_words="english", ngram_range=(1, 2), dtype=np.float64)
        try:
            matrix = vectorizer.fit_transform(texts)
        except ValueError:  # empty vocabulary: only stop words and punctuation
            return None, np.array([], dtype=object)
        vocabulary = vectorizer.get_feature_names_out()
        keep = collocations(vocabulary, np.asarray(matrix.sum(axis=0)).ravel())
        return sparse.csr_matrix(matrix[:, keep]), vocabulary[keep]

    def _level_keywords(
        self, counts: sparse.csr_matrix | None, vocabulary: np.ndarray, groups: Sequence[ClusterGroup]
    ) -> list[list[str]]:
        if counts is None or not groups:
            return [[] for _ in groups]
        rows = np.concatenate([np.full(len(g.members), i) for i, g in enumerate(groups)])
        cols = np.concatenate([g.members for g in groups])
        weights = np.concatenate([np.asarray(g.weights, dtype=np.float64) for g in groups])
        membership = sparse.csr_matrix((weights, (rows, cols)), shape=(len(groups), counts.shape[0]))
        class_counts = sparse.csr_matrix(membership @ counts)
        totals = np.asarray(class_counts.sum(axis=1)).ravel()
        term_totals = np.asarray(class_counts.sum(axis=0)).ravel()
        average = totals.sum() / len(groups)
        idf = np.log1p(average / np.where(term_totals > 0, term_totals, 1.0))
        wanted = self.keywords_per_cluster * 3 + 5  # candidates, before redundant terms are dropped
        result: list[list[str]] = []
        for i in range(len(groups)):
            start, end = class_counts.indptr[i], class_counts.indptr[i + 1]
            terms, values = class_counts.indices[start:end], class_counts.data[start:end]
            if totals[i] <= 0 or len(terms) == 0:
                result.append([])
                continue
            scores = values / totals[i] * idf[terms]
            order = np.lexsort((terms, -scores))[:wanted]  # score descending, then alphabetical
            ranked = [str(vocabulary[t]) for t in terms[order]]
            result.append(distinct_terms(ranked, self.keywords_per_cluster))
        return result

    def _unique_names(self, groups: Sequence[ClusterGroup], keywords: Sequence[list[str]]) -> list[str]:
        names = [self._name(g, k[: self.name_keywords]) for g, k in zip(groups, keywords, strict=True)]
        seen: dict[str, int] = {}
        for name in names:
            seen[name] = seen.get(name, 0) + 1
        for i, (group, terms) in enumerate(zip(groups, keywords, strict=True)):
            if seen[names[i]] <= 1:
                continue
            extra = terms[self.name_keywords : self.name_keywords + 1]
            candidate = self._name(group, [*terms[: self.name_keywords], *extra]) if extra else ""
            if not candidate or candidate in seen:
                candidate = f"{names[i]} ({group.cluster_id})"
            seen[names[i]] -= 1
            seen[candidate] = seen.get(candidate, 0) + 1
            names[i] = candidate
        return names

    @staticmethod
    def _name(group: ClusterGroup, terms: Sequence[str]) -> str:
        if not terms:
            return f"Cluster {group.cluster_id}"
        name = " / ".join(terms)
        return name[0].upper() + name[1:]

    def _description(self, texts: Sequence[str], group: ClusterGroup, terms: Sequence[str]) -> str:
        about = (
            f"Conversations about {join_phrase(terms[: self.name_keywords])}"
            if terms
            else "Conversations grouped by embedding similarity; their texts gave no keywords"
        )
        quote = ""
        if self.max_quote_chars > 0:
            central = next((texts[int(i)] for i in group.members if texts[int(i)].strip()), "")
            quote = trim_text(central, self.max_quote_chars)
        return f"{about}; e.g. '{quote}'." if quote else f"{about}."
