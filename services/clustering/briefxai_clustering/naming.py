"""Cluster names and descriptions, offline: phrases that many members share, picked against the centroid.

``Namer`` is the seam: the pipeline hands a namer the texts and unit vectors of *reported* conversations
only (never a withheld one) and the groups of every level; an LLM namer can implement the same protocol
later. For speed the pipeline passes at most ``naming_texts_per_cluster`` texts per base cluster (its
most central members), each weighted by how many conversations it stands for.

Why phrases are embedded through their conversations: the clustering service has no embedding model
of its own and calls no other service (no extra hop per analysis, no second model in the clustering
pod), but it holds every reported conversation's vector from the same model, and its naming text. So a
phrase's vector is the normalised weighted mean of the vectors of the sampled conversations whose text
holds it (document-vector phrase embedding, as in Top2Vec): a phrase said across many clusters lands
between them, one said throughout a single cluster lands on its centroid.

``PhraseNamer`` (the default), per level and cluster:

1. Candidates: the phrases of ``phrases.py`` (1-3 words, no stop word at either end, no numbers or
   code) held by at least 2 member texts (1 in clusters of under 3). ``coverage`` is the weighted share
   of members whose text holds the phrase; specificity is the class-based TF-IDF of BERTopic on those
   counts, ``coverage * log(1 + A / F)``, with ``A`` the average weight of a cluster of the level and
   ``F`` the phrase's weight over the whole level, so that siblings are contrasted. The best
   ``CANDIDATES`` by specificity are kept, after a phrase held mostly within a longer one ("peanut" in
   "peanut butter") gives way to it.
2. Score: ``relevance * sqrt(specificity / best specificity)``, relevance being the cosine of the
   phrase's vector to the cluster's centroid (the weighted mean of its members' vectors), times
   ``1 + LENGTH_BONUS`` for a phrase of several words without a stop word ("free trial").
3. Order: maximal marginal relevance (KeyBERT's MMR), each next phrase maximising
   ``(1 - diversity) * score / best score - diversity * max similarity`` to those chosen; similarity is
   the cosine of what two phrases add beyond the centroid (their vectors' components orthogonal to it),
   and a phrase sharing a word (stem) with a chosen one is skipped ("charge" after "charged"). A picked
   phrase then gives way to a longer one holding it that scores at least ``REFINE_SHARE`` of it
   ("reset password" for "password"). Ties: alphabetical.
4. Keywords: the first ``keywords_per_cluster`` phrases. Name: the first phrase, then up to
   ``name_phrases`` in all while each scores at least ``NAME_MIN_SCORE`` of the first and the name stays
   within ``max_name_chars``, joined with " · ", words written as members mostly write them ("TV
   shows"), first letter capitalised: "Reset password · account locked". Names are made unique within
   a level by adding the next keyword, else the cluster id.
5. Description: "Conversations about reset password, account locked and reset email; e.g. '<text of the
   member nearest the centroid, trimmed>'." No phrase at all: "Cluster L0-3" and a description saying so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt
from scipy import sparse

from briefxai_clustering.model import FloatArray, IntArray
from briefxai_clustering.phrases import STOP_WORDS, Casing, run_phrases, segments, stem

_SPACE = re.compile(r"\s+")
CANDIDATES = 30  # phrases per cluster scored against the centroid
ABSORB_SHARE = 0.6  # a phrase gives way to a longer one holding it in at least this share of its texts
LENGTH_BONUS = 0.15  # bonus of a phrase of 2-3 words without stop words ("free trial" over "trial")
REFINE_SHARE = 0.9  # a picked phrase gives way to a longer one holding it that scores this share of it
NAME_MIN_SCORE = 0.6  # a phrase after the first joins the name when it scores this share of the first
SCORE_DECIMALS = 6  # scores are rounded before ranking, so that float noise cannot reorder ties


@dataclass(frozen=True)
class ClusterGroup:
    """One cluster to name: its members as indices into the namer's ``texts`` (and ``vectors``).

    For a large cluster ``members`` may be a sample (the pipeline gives the most central members of each
    base cluster); ``weights[j]`` is how many conversations ``members[j]`` stands for, so that weighted
    counts and means estimate the whole cluster's.
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

    def name(
        self, texts: Sequence[str], vectors: FloatArray, levels: Sequence[Sequence[ClusterGroup]]
    ) -> dict[str, ClusterLabel]:
        """``texts`` and ``vectors`` (unit rows, the same embedding model as the clustering) are the
        reported conversations'; ``levels[0]`` is the base level."""
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


def join_phrase(terms: Sequence[str]) -> str:
    if len(terms) <= 1:
        return "".join(terms)
    return ", ".join(terms[:-1]) + " and " + terms[-1]


def sub_phrases(phrase: str) -> list[str]:
    """The shorter phrases inside ``phrase``: "a b c" -> "a", "a b", "b", "b c", "c"."""
    words = phrase.split()
    return [
        " ".join(words[i:j])
        for i in range(len(words))
        for j in range(i + 1, len(words) + 1)
        if j - i < len(words)
    ]


def mmr(
    scores: npt.NDArray[np.float64],
    similarity: npt.NDArray[np.float64],
    blocked: npt.NDArray[np.bool_],
    diversity: float,
    limit: int,
) -> list[int]:
    """Maximal marginal relevance: indices in pick order, each maximising ``(1 - diversity) * score /
    best - diversity * max similarity to those picked``; ``blocked[i, j]``: never both i and j. Candidates
    are expected in tie-break order (the first of equal values wins)."""
    if len(scores) == 0:
        return []
    relevance = scores / max(float(scores.max()), 1e-12)
    picked: list[int] = []
    redundancy = np.full(len(scores), -np.inf)
    open_ = np.ones(len(scores), dtype=bool)
    while open_.any() and len(picked) < limit:
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        value = np.round((1 - diversity) * relevance - diversity * penalty, SCORE_DECIMALS)
        value[~open_] = -np.inf
        best = int(np.argmax(value))
        picked.append(best)
        open_ &= ~blocked[best]
        open_[best] = False
        redundancy = np.maximum(redundancy, similarity[best])
    return picked


def refine(
    picks: list[int], phrases: Sequence[str], scores: npt.NDArray[np.float64], blocked: npt.NDArray[np.bool_]
) -> list[int]:
    """Each picked phrase replaced by the best longer phrase holding it ("reset password" for
    "password") that scores at least ``REFINE_SHARE`` of it and clashes with no other pick."""
    refined = list(picks)
    for n, p in enumerate(picks):
        inside = f" {phrases[p]} "
        others = [q for m, q in enumerate(refined) if m != n]
        for q in np.argsort(-scores, kind="stable").tolist():
            if scores[q] < REFINE_SHARE * scores[p]:
                break
            if q in refined or inside not in f" {phrases[q]} " or blocked[q, others].any():
                continue
            refined[n] = q
            break
    return refined


@dataclass
class PhraseIndex:
    """Which texts hold which phrase (``holds[i, p]`` is 1 when text i does), with phrase vectors."""

    phrases: list[str]
    holds: sparse.csr_matrix  # texts x phrases, 0/1
    casing: Casing
    text_vectors: FloatArray  # the namer's input, not copied
    text_weights: npt.NDArray[np.float64]  # conversations each text stands for
    _vectors: dict[int, npt.NDArray[np.float64]] = field(default_factory=dict)
    _columns: dict[str, int] | None = None
    _counts: npt.NDArray[np.float64] | None = None

    @classmethod
    def build(
        cls, texts: Sequence[str], vectors: FloatArray, weights: npt.NDArray[np.float64]
    ) -> PhraseIndex:
        vocabulary: dict[str, int] = {}
        indices: list[int] = []
        indptr = [0]
        casing = Casing()
        for text in texts:
            found: dict[str, None] = {}  # insertion-ordered set: the same texts give the same columns
            for run in segments(text, casing):
                found.update(dict.fromkeys(run_phrases(run)))
            indices.extend(vocabulary.setdefault(phrase, len(vocabulary)) for phrase in found)
            indptr.append(len(indices))
        holds = sparse.csr_matrix(
            (np.ones(len(indices)), np.asarray(indices, dtype=np.int64), np.asarray(indptr, dtype=np.int64)),
            shape=(len(texts), len(vocabulary)),
        )
        return cls(list(vocabulary), holds, casing, np.asarray(vectors, dtype=np.float32), weights)

    def display(self, phrase: str) -> str:
        """``phrase`` with each word written as the texts mostly write it mid-sentence ("TV shows")."""
        return " ".join(self.casing.word(word, self.uses(word)) for word in phrase.split())

    def uses(self, word: str) -> float:
        """Texts holding ``word`` (as a phrase of its own)."""
        if self._columns is None:
            self._columns = {phrase: c for c, phrase in enumerate(self.phrases) if " " not in phrase}
        column = self._columns.get(word)
        return 0.0 if column is None else float(self._text_counts()[column])

    def _text_counts(self) -> npt.NDArray[np.float64]:
        if self._counts is None:
            self._counts = np.asarray(self.holds.sum(axis=0)).ravel()
        return self._counts

    def mean_vector(self, members: IntArray) -> npt.NDArray[np.float64]:
        """The unit weighted mean of the vectors of texts ``members`` (no copy of their rows)."""
        selector = sparse.csr_matrix(
            (self.text_weights[members], (np.zeros(len(members), dtype=np.int64), members)),
            shape=(1, len(self.text_weights)),
            dtype=np.float32,
        )
        mean = np.asarray(selector @ self.text_vectors, dtype=np.float64).ravel()
        return mean / max(float(np.linalg.norm(mean)), 1e-12)

    def extra_words(self, column: int) -> int:
        """Words after the first of a phrase without stop words; 0 for one with a stop word inside."""
        words = self.phrases[column].split()
        return 0 if any(word in STOP_WORDS for word in words) else min(len(words) - 1, 1)

    def vectors(self, columns: Sequence[int]) -> npt.NDArray[np.float64]:
        """Unit vectors of the phrases ``columns``: the weighted mean of the texts holding each."""
        missing = [c for c in columns if c not in self._vectors]
        if missing:
            holders = self.holds[:, missing].T.multiply(self.text_weights[None, :])
            # float32 on both sides: scipy would otherwise copy every text vector to float64.
            sums = np.asarray(
                sparse.csr_matrix(holders, dtype=np.float32) @ self.text_vectors, dtype=np.float64
            )
            norms = np.linalg.norm(sums, axis=1, keepdims=True)
            for c, row in zip(missing, sums / np.where(norms > 0, norms, 1.0), strict=True):
                self._vectors[c] = row
        dim = self.text_vectors.shape[1]
        return np.array([self._vectors[c] for c in columns]).reshape(len(columns), dim)


@dataclass(frozen=True)
class Choice:
    """The phrases chosen for one cluster, best first, with their scores."""

    phrases: list[str]
    scores: list[float]


class PhraseNamer:
    """Offline names from member-shared phrases picked against the centroid, and the most central text."""

    def __init__(
        self,
        keywords_per_cluster: int = 8,
        name_phrases: int = 2,
        max_quote_chars: int = 100,
        diversity: float = 0.5,
        max_name_chars: int = 48,
    ) -> None:
        if not 0.0 <= diversity <= 1.0:
            raise ValueError(f"diversity must lie in [0, 1], got {diversity}")
        self.keywords_per_cluster = keywords_per_cluster
        self.name_phrases = name_phrases
        self.max_quote_chars = max_quote_chars
        self.diversity = diversity
        self.max_name_chars = max_name_chars

    def name(
        self, texts: Sequence[str], vectors: FloatArray, levels: Sequence[Sequence[ClusterGroup]]
    ) -> dict[str, ClusterLabel]:
        index = PhraseIndex.build(texts, vectors, self._text_weights(len(texts), levels))
        labels: dict[str, ClusterLabel] = {}
        for groups in levels:
            choices = self._level_choices(index, groups)
            names = self._unique_names(groups, choices, index)
            for group, choice, name in zip(groups, choices, names, strict=True):
                labels[group.cluster_id] = ClusterLabel(
                    name=name,
                    description=self._description(texts, group, choice, index),
                    keywords=tuple(choice.phrases[: self.keywords_per_cluster]),
                )
        return labels

    @staticmethod
    def _text_weights(n: int, levels: Sequence[Sequence[ClusterGroup]]) -> npt.NDArray[np.float64]:
        weights = np.ones(n, dtype=np.float64)
        for group in levels[0] if levels else ():
            weights[group.members] = group.weights
        return weights

    def _level_choices(self, index: PhraseIndex, groups: Sequence[ClusterGroup]) -> list[Choice]:
        if not groups or not index.phrases:
            return [Choice([], []) for _ in groups]
        rows = np.concatenate([np.full(len(g.members), i) for i, g in enumerate(groups)])
        cols = np.concatenate([g.members for g in groups])
        weights = np.concatenate([np.asarray(g.weights, dtype=np.float64) for g in groups])
        shape = (len(groups), index.holds.shape[0])
        weighted = sparse.csr_matrix(sparse.csr_matrix((weights, (rows, cols)), shape=shape) @ index.holds)
        counts = sparse.csr_matrix(
            sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape) @ index.holds
        )
        weighted.sort_indices()
        counts.sort_indices()
        totals = np.array([float(np.sum(g.weights)) for g in groups])
        phrase_totals = np.asarray(weighted.sum(axis=0)).ravel()
        idf = np.log1p((totals.sum() / len(groups)) / np.where(phrase_totals > 0, phrase_totals, 1.0))
        choices = []
        for i, group in enumerate(groups):
            columns = counts.indices[counts.indptr[i] : counts.indptr[i + 1]]
            held = counts.data[counts.indptr[i] : counts.indptr[i + 1]]
            share = np.zeros(len(columns))
            w_columns = weighted.indices[weighted.indptr[i] : weighted.indptr[i + 1]]
            share[np.searchsorted(columns, w_columns)] = weighted.data[
                weighted.indptr[i] : weighted.indptr[i + 1]
            ]
            coverage = share / totals[i] if totals[i] > 0 else share
            choices.append(self._choose(index, group, columns, held, coverage * idf[columns]))
        return choices

    def _choose(
        self,
        index: PhraseIndex,
        group: ClusterGroup,
        columns: IntArray,
        held: npt.NDArray[np.float64],
        specificity: npt.NDArray[np.float64],
    ) -> Choice:
        """The cluster's phrases in pick order; ``columns`` are the phrases its members hold, ``held``
        in how many member texts, ``specificity`` their c-TF-IDF."""
        eligible = (held >= (2 if len(group.members) >= 3 else 1)) & (specificity > 0)
        columns, held = columns[eligible], held[eligible]
        specificity = np.round(specificity[eligible], SCORE_DECIMALS)
        if len(columns) == 0:
            return Choice([], [])
        wanted = CANDIDATES * 3
        if len(columns) > wanted:  # the best ``wanted`` and any tied with the last of them
            threshold = -np.partition(-specificity, wanted - 1)[wanted - 1]
            keep = specificity >= threshold
            columns, held, specificity = columns[keep], held[keep], specificity[keep]
        order = sorted(range(len(columns)), key=lambda j: (-specificity[j], index.phrases[columns[j]]))[
            :wanted
        ]
        count_of = {int(columns[j]): float(held[j]) for j in order}
        spec_of = {int(columns[j]): float(specificity[j]) for j in order}
        pool = self._absorb([int(columns[j]) for j in order], index, count_of)[:CANDIDATES]
        phrase_vectors = index.vectors(pool)
        centroid = index.mean_vector(group.members)
        relevance = phrase_vectors @ centroid
        spec = np.array([spec_of[c] for c in pool])
        lengths = np.array([index.extra_words(c) for c in pool])
        scores = np.round(
            np.clip(relevance, 0.0, None)
            * np.sqrt(spec / max(float(spec.max()), 1e-12))
            * (1.0 + LENGTH_BONUS * lengths),
            SCORE_DECIMALS,
        )
        ranking = sorted(range(len(pool)), key=lambda j: (-scores[j], index.phrases[pool[j]]))
        pool = [pool[j] for j in ranking]
        scores = scores[ranking]
        residual = phrase_vectors[ranking] - np.outer(relevance[ranking], centroid)
        norms = np.linalg.norm(residual, axis=1, keepdims=True)
        residual /= np.where(norms > 1e-9, norms, 1.0)
        words = [{stem(word) for word in index.phrases[c].split()} for c in pool]
        blocked = np.array([[bool(a & b) for b in words] for a in words]).reshape(len(pool), len(pool))
        picks = refine(
            mmr(scores, residual @ residual.T, blocked, self.diversity, self.keywords_per_cluster),
            [index.phrases[c] for c in pool],
            scores,
            blocked,
        )
        return Choice([index.phrases[pool[j]] for j in picks], [float(scores[j]) for j in picks])

    @staticmethod
    def _absorb(ranked: list[int], index: PhraseIndex, held: dict[int, float]) -> list[int]:
        """``ranked`` without the phrases held mostly inside a longer ranked phrase."""
        longest: dict[str, float] = {}
        for c in ranked:
            for part in sub_phrases(index.phrases[c]):
                longest[part] = max(longest.get(part, 0.0), held[c])
        return [c for c in ranked if longest.get(index.phrases[c], 0.0) < ABSORB_SHARE * held[c]]

    def _name_phrases(self, choice: Choice, index: PhraseIndex) -> list[str]:
        chosen: list[str] = []
        length = 0
        for phrase, score in zip(choice.phrases, choice.scores, strict=True):
            if len(chosen) == self.name_phrases:
                break
            if chosen and (
                score < NAME_MIN_SCORE * choice.scores[0] or length + 3 + len(phrase) > self.max_name_chars
            ):
                continue
            chosen.append(index.display(phrase))
            length += len(phrase) + (3 if len(chosen) > 1 else 0)
        return chosen

    def _unique_names(
        self, groups: Sequence[ClusterGroup], choices: Sequence[Choice], index: PhraseIndex
    ) -> list[str]:
        parts = [self._name_phrases(choice, index) for choice in choices]
        names = [self._name(g, p) for g, p in zip(groups, parts, strict=True)]
        seen: dict[str, int] = {}
        for name in names:
            seen[name] = seen.get(name, 0) + 1
        for i, (group, choice) in enumerate(zip(groups, choices, strict=True)):
            if seen[names[i]] <= 1:
                continue
            extra = [index.display(p) for p in choice.phrases if index.display(p) not in parts[i]][:1]
            candidate = self._name(group, [*parts[i], *extra]) if extra else ""
            if not candidate or candidate in seen:
                candidate = f"{names[i]} ({group.cluster_id})"
            seen[names[i]] -= 1
            seen[candidate] = seen.get(candidate, 0) + 1
            names[i] = candidate
        return names

    @staticmethod
    def _name(group: ClusterGroup, phrases: Sequence[str]) -> str:
        if not phrases:
            return f"Cluster {group.cluster_id}"
        name = " · ".join(phrases)
        return name[0].upper() + name[1:]

    def _description(
        self, texts: Sequence[str], group: ClusterGroup, choice: Choice, index: PhraseIndex
    ) -> str:
        about = (
            f"Conversations about {join_phrase([index.display(p) for p in choice.phrases[:3]])}"
            if choice.phrases
            else "Conversations grouped by embedding similarity; their texts gave no keywords"
        )
        quote = ""
        if self.max_quote_chars > 0:
            central = next((texts[int(i)] for i in group.members if texts[int(i)].strip()), "")
            quote = trim_text(central, self.max_quote_chars)
        return f"{about}; e.g. '{quote}'." if quote else f"{about}."
