"""Where k (the number of base clusters) is chosen.

Automatic rule (``params.k == 0``), for n vectors::

    k = round(sqrt(n))
    k = clamp(k, 2, min(max_k, max(2, n // min_cluster_size)))
    k = min(k, distinct vectors)

- Why ``sqrt(n)``: measured on real human chats (the chitchat dev set, 34 topics) and on the generated
  sample (24 topics), k-means' agreement with the topic labels (AMI) stays within 5% of its value at
  k = the number of labels over a wide band that starts a little below the number of labels and reaches
  two to three times it; below that band it falls fast (under-splitting merges topics), above it slowly.
  ``sqrt(n)`` lands inside that band on both sets at every size measured (400 to 2,873 conversations:
  docs/quality.md), where the former ``sqrt(n/2)`` fell below it (22 clusters for 1,000 chats of 34
  topics). A slightly fine base level costs little: the hierarchy above it merges related clusters.
  Criteria on the data (silhouette, Calinski-Harabasz, Davies-Bouldin) were measured too and pointed far
  from the labels on one set or the other (docs/quality.md), so the rule is on n.
- ``max_k`` (setting, default 200) bounds the work of k-means, naming and the hierarchy: 40,000
  conversations or more get 200 base clusters.
- ``n // min_cluster_size``: with more clusters than that, the *average* cluster would fall under the
  privacy threshold and most clusters would be merged or withheld; capping k there keeps them reportable.
- Distinct vectors: k-means cannot make more non-empty clusters than there are distinct points
  (scikit-learn warns with a ConvergenceWarning and returns duplicate centres), so k never exceeds them.
  That is the one case where k may be 1 (every vector identical).

An explicit ``params.k`` is used as given (the request is rejected when it exceeds ``max_k``; see
validation.py), except that it is clamped to the number of distinct vectors, which ``k_rule`` reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class KChoice:
    k: int
    rule: str  # human-readable: how k was reached, returned to the caller as ``k_rule``


def count_distinct_rows(vectors: npt.NDArray[np.float32]) -> int:
    """Distinct rows, by exact bit pattern (a hash collision could only make the count smaller)."""
    return len({hash(row.tobytes()) for row in np.ascontiguousarray(vectors)})


def choose_k(n: int, n_distinct: int, requested: int, *, max_k: int, min_cluster_size: int) -> KChoice:
    """The base k for ``n`` vectors of which ``n_distinct`` differ; ``requested`` 0 means automatic."""
    if n < 1 or n_distinct < 1 or n_distinct > n:
        raise ValueError(f"need 1 <= n_distinct <= n, got n={n}, n_distinct={n_distinct}")
    if requested > 0:
        if requested <= n_distinct:
            return KChoice(requested, f"requested: k={requested}")
        return KChoice(
            n_distinct,
            f"requested: k={requested}, clamped to {n_distinct} (distinct vectors; n={n})",
        )
    raw = round(math.sqrt(n))
    privacy_cap = max(2, n // max(1, min_cluster_size))
    upper = min(max_k, privacy_cap)
    k = min(max(raw, 2), upper)
    rule = f"auto: round(sqrt(n)) = round(sqrt({n})) = {raw}"
    if raw < 2:
        rule += ", raised to the minimum 2"
    elif raw > upper:
        reason = f"max_k={max_k}" if upper == max_k else f"n // min_cluster_size = {n} // {min_cluster_size}"
        rule += f", capped at {upper} ({reason})"
    if k > n_distinct:
        rule += f", clamped to {n_distinct} (distinct vectors)"
        k = n_distinct
    return KChoice(k, rule)
