"""Facet distributions per cluster, computed by the gateway from the stored facet values.

- Enum facets (``task``, ``language`` when offered as enum): counts per choice.
- Text facets with few distinct values across the analysis (at most ``MAX_TEXT_LABELS``) are
  counted like enums; free-text facets (``request`` and any with more values) are skipped.
- Number facets are bucketed, with the mean:
  * a [-1, 1] range (``sentiment``): ``negative`` (< -0.05), ``neutral``, ``positive`` (> 0.05);
  * a small integer range (``concerning`` 1..5): one bucket per integer, ``"1"`` .. ``"5"``;
  * anything else (turn counts): powers of two, ``"0"``, ``"1"``, ``"2-3"``, ``"4-7"``, ...
- Failed values are left out. A cluster's distribution covers the reported conversations under it:
  base clusters count their own, higher levels add up their children.
- A later revision of the results (AssignConversations) counts the conversations it adds with
  ``build(..., counted=...)`` (the facets the analysis counts) and adds them with :func:`merge`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .models import ClusterNode, FacetDefinition, FacetDistribution, FacetType

MAX_TEXT_LABELS = 50
FREE_TEXT_FACETS = frozenset({"request"})
SENTIMENT_NEUTRAL_BAND = 0.05
MAX_INTEGER_BUCKETS = 10


@dataclass(slots=True)
class _Accumulator:
    counts: dict[str, int] = field(default_factory=dict)
    total: float = 0.0
    n: int = 0

    def merge(self, other: _Accumulator) -> None:
        for label, count in other.counts.items():
            self.counts[label] = self.counts.get(label, 0) + count
        self.total += other.total
        self.n += other.n


def _is_integral(value: float) -> bool:
    return math.isfinite(value) and float(value).is_integer()


def number_buckets(definition: FacetDefinition | None) -> list[str]:
    """The bucket labels a number facet always reports (possibly with zero counts), in order."""
    if definition is None:
        return []
    lo, hi = definition.min, definition.max
    if lo == -1.0 and hi == 1.0:
        return ["negative", "neutral", "positive"]
    if _is_integral(lo) and _is_integral(hi) and 0 <= hi - lo < MAX_INTEGER_BUCKETS:
        return [str(v) for v in range(int(lo), int(hi) + 1)]
    return []


def number_bucket(definition: FacetDefinition | None, value: float) -> str:
    """The bucket label of one number value."""
    if definition is not None:
        lo, hi = definition.min, definition.max
        if lo == -1.0 and hi == 1.0:
            if value < -SENTIMENT_NEUTRAL_BAND:
                return "negative"
            if value > SENTIMENT_NEUTRAL_BAND:
                return "positive"
            return "neutral"
        if _is_integral(lo) and _is_integral(hi) and 0 <= hi - lo < MAX_INTEGER_BUCKETS:
            return str(int(min(max(round(value), lo), hi)))
    if value < 1:
        return "0" if value >= 0 else "<0"
    low = 1 << (int(value).bit_length() - 1)
    high = low * 2 - 1
    return str(low) if low == high else f"{low}-{high}"


class DistributionBuilder:
    """Feed it (base cluster, facet value) pairs, then ask for every cluster's distributions.

    ``add`` only counts raw values (one dict update, so 100k conversations x 8 facets stay cheap);
    bucketing, the distinct-label rule for text facets and the roll-up happen once in ``build``.
    """

    def __init__(self, definitions: Mapping[str, FacetDefinition]) -> None:
        self._definitions = dict(definitions)
        self._raw: Counter[tuple[str, str, str | float]] = Counter()

    def add(self, cluster_id: str, facet: str, text: str | None, number: float | None) -> None:
        """One successful facet value of a conversation reported in base cluster ``cluster_id``."""
        if not cluster_id or facet in FREE_TEXT_FACETS:
            return
        if number is not None:
            self._raw[(cluster_id, facet, float(number))] += 1
        elif text is not None:
            self._raw[(cluster_id, facet, text)] += 1

    def add_many(self, rows: Iterable[tuple[str, str, str | None, float | None]]) -> None:
        for cluster_id, facet, text, number in rows:
            self.add(cluster_id, facet, text, number)

    def _is_numeric(self, facet: str, observed_numbers: bool) -> bool:
        definition = self._definitions.get(facet)
        if definition is not None:
            return definition.type is FacetType.NUMBER
        return observed_numbers

    def build(
        self, clusters: Sequence[ClusterNode], counted: Collection[str] | None = None
    ) -> dict[str, list[FacetDistribution]]:
        """Distributions for every cluster of the tree (higher levels sum their children).

        ``counted``: exactly these facets are counted, however many labels they have here (the facets
        the analysis's own distributions count, when these values are added to them)."""
        labels: dict[str, set[str]] = {}
        has_numbers: set[str] = set()
        for _, facet, value in self._raw:
            if isinstance(value, float):
                has_numbers.add(facet)
            else:
                labels.setdefault(facet, set()).add(value)
        numeric = {f for f in {*labels, *has_numbers} if self._is_numeric(f, f in has_numbers)}
        skipped = set()
        for facet, seen in labels.items():
            definition = self._definitions.get(facet)
            is_enum = definition is not None and definition.type is FacetType.ENUM
            if facet not in numeric and not is_enum and len(seen) > MAX_TEXT_LABELS:
                skipped.add(facet)
        if counted is not None:
            skipped = {*labels, *has_numbers} - set(counted)
        own: dict[str, dict[str, _Accumulator]] = {}
        for (cluster_id, facet, value), count in self._raw.items():
            if facet in skipped:
                continue
            if facet in numeric:
                if not isinstance(value, float) or not math.isfinite(value):
                    continue
                label = number_bucket(self._definitions.get(facet), value)
            elif isinstance(value, str):
                label = value
            else:
                continue
            acc = own.setdefault(cluster_id, {}).setdefault(facet, _Accumulator())
            acc.counts[label] = acc.counts.get(label, 0) + count
            if facet in numeric:
                acc.total += float(value) * count
                acc.n += count

        by_id = {c.id: c for c in clusters}
        totals: dict[str, dict[str, _Accumulator]] = {}
        for cluster in clusters:
            mine = totals.setdefault(cluster.id, {})
            for facet, acc in own.get(cluster.id, {}).items():
                mine.setdefault(facet, _Accumulator()).merge(acc)
        # Bottom-up: a parent is always at a higher level than its children.
        for cluster in sorted(clusters, key=lambda c: c.level):
            parent = by_id.get(cluster.parent_id) if cluster.parent_id else None
            if parent is None or parent.level <= cluster.level:
                continue
            target = totals.setdefault(parent.id, {})
            for facet, acc in totals.get(cluster.id, {}).items():
                target.setdefault(facet, _Accumulator()).merge(acc)

        facets = sorted({*labels, *has_numbers} - skipped)
        result: dict[str, list[FacetDistribution]] = {}
        for cluster in clusters:
            per_facet = totals.get(cluster.id, {})
            distributions: list[FacetDistribution] = []
            for facet in facets:
                found = per_facet.get(facet)
                is_number = facet in numeric
                counts: dict[str, int] = {}
                if is_number:
                    counts = dict.fromkeys(number_buckets(self._definitions.get(facet)), 0)
                if found is not None:
                    for label, count in found.counts.items():
                        counts[label] = counts.get(label, 0) + count
                if not counts:
                    continue
                mean = (found.total / found.n) if (is_number and found is not None and found.n) else None
                distributions.append(FacetDistribution(facet=facet, counts=counts, mean=mean))
            result[cluster.id] = distributions
        return result


def merge(
    earlier: Sequence[FacetDistribution], added: Sequence[FacetDistribution]
) -> list[FacetDistribution]:
    """One cluster's distributions with ``added`` counted in (counts summed, means weighted by their
    counts: a number facet's counts sum to the values its mean is over), by facet name."""
    merged = {d.facet: FacetDistribution(d.facet, dict(d.counts), d.mean) for d in earlier}
    for item in added:
        current = merged.get(item.facet)
        if current is None:
            merged[item.facet] = FacetDistribution(item.facet, dict(item.counts), item.mean)
            continue
        n_earlier = sum(current.counts.values()) if current.mean is not None else 0
        n_added = sum(item.counts.values()) if item.mean is not None else 0
        for label, count in item.counts.items():
            current.counts[label] = current.counts.get(label, 0) + count
        if n_earlier + n_added:
            total = (current.mean or 0.0) * n_earlier + (item.mean or 0.0) * n_added
            current.mean = total / (n_earlier + n_added)
    return [merged[facet] for facet in sorted(merged)]
