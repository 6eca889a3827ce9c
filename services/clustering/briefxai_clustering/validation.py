"""Request checks with field paths (``vectors.data``, ``ids[3]``, ``params.k``), and server defaults.

Decisions on edge cases:

- Fewer than 2 vectors: INVALID_ARGUMENT on ``vectors.count`` (nothing to group).
- ``ids`` must have one entry per vector; ``user_ids`` and ``texts`` are either empty (absent) or have
  one entry per vector. Ids are non-empty, at most 256 characters, and unique.
- Vectors must be finite and non-zero; they need not be unit length (they are normalised).
- ``params.k`` above ``max_k`` and ``params.hierarchy_depth`` above ``max_hierarchy_depth`` are rejected;
  a ``params.k`` above the number of distinct vectors is clamped (reported in ``k_rule``).
- ``min_cluster_size`` / ``min_distinct_users`` larger than the input are allowed: everything is then
  withheld, which is the documented, privacy-safe result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from briefxai_clustering.model import ClusteringParams, FloatArray
from briefxai_clustering.settings import ClusteringSettings
from briefxai_common.errors import InvalidArgument
from briefxai_common.vectors import unpack_vectors

MAX_ID_CHARS = 256
MAX_REPORTED_VIOLATIONS = 20


@dataclass(frozen=True)
class RequestedParams:
    """``ClusteringParams`` as sent: 0 means "server default"."""

    k: int = 0
    hierarchy_depth: int = 0
    max_top_clusters: int = 0
    min_cluster_size: int = 0
    min_distinct_users: int = 0
    seed: int = 0
    skip_map: bool = False


def check_shapes(
    dim: int,
    count: int,
    data_length: int,
    ids: Sequence[str],
    user_ids: Sequence[str],
    texts: Sequence[str],
    *,
    max_vectors: int,
) -> None:
    """Every count and length of the request; all violations at once."""
    problems: list[tuple[str, str]] = []
    if dim == 0:
        problems.append(("vectors.dim", "must be at least 1"))
    if count < 2:
        problems.append(("vectors.count", f"at least 2 vectors are needed to cluster, got {count}"))
    elif count > max_vectors:
        problems.append(("vectors.count", f"at most {max_vectors} vectors per request, got {count}"))
    if dim > 0 and data_length != dim * count * 4:
        problems.append(
            (
                "vectors.data",
                f"holds {data_length} bytes, expected count * dim * 4 = {count} * {dim} * 4 = "
                f"{count * dim * 4}",
            )
        )
    if len(ids) != count:
        problems.append(("ids", f"one id per vector is needed: {count} vectors, {len(ids)} ids"))
    for name, values in (("user_ids", user_ids), ("texts", texts)):
        if values and len(values) != count:
            problems.append(
                (name, f"must be empty or have one entry per vector ({count}), got {len(values)}")
            )
    if problems:
        raise InvalidArgument.many(problems)


def decode_vectors(data: bytes, dim: int, count: int) -> FloatArray:
    """The (count, dim) float32 array; rejects NaN, infinity and all-zero rows (``vectors.data``)."""
    try:
        vectors = unpack_vectors(data, dim, count)
    except ValueError as error:
        raise InvalidArgument("vectors.data", str(error)) from error
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise InvalidArgument(
            "vectors.data",
            f"vector {int(bad[0])} holds NaN or infinity ({bad.size} such vectors); values must be finite",
        )
    zero = ~np.any(vectors != 0, axis=1)
    if zero.any():
        bad = np.flatnonzero(zero)
        raise InvalidArgument(
            "vectors.data",
            f"vector {int(bad[0])} is all zeros ({bad.size} such vectors); it has no direction",
        )
    return vectors


def check_ids(ids: Sequence[str]) -> None:
    """Non-empty, at most 256 characters, unique; names up to 20 offending ``ids[i]``."""
    problems: list[tuple[str, str]] = []
    first_seen: dict[str, int] = {}
    for i, conversation_id in enumerate(ids):
        if not conversation_id:
            problems.append((f"ids[{i}]", "must not be empty"))
        elif len(conversation_id) > MAX_ID_CHARS:
            problems.append((f"ids[{i}]", f"at most {MAX_ID_CHARS} characters, got {len(conversation_id)}"))
        elif conversation_id in first_seen:
            problems.append(
                (f"ids[{i}]", f"duplicates ids[{first_seen[conversation_id]}] ({conversation_id!r})")
            )
        else:
            first_seen[conversation_id] = i
        if len(problems) >= MAX_REPORTED_VIOLATIONS:
            break
    if problems:
        raise InvalidArgument.many(problems)


def resolve_params(requested: RequestedParams, settings: ClusteringSettings) -> ClusteringParams:
    """Applies server defaults to 0 fields and checks the limits."""
    problems: list[tuple[str, str]] = []
    if requested.k > settings.max_k:
        problems.append(("params.k", f"at most max_k = {settings.max_k}, got {requested.k} (0 = automatic)"))
    if requested.hierarchy_depth > settings.max_hierarchy_depth:
        problems.append(
            (
                "params.hierarchy_depth",
                f"at most {settings.max_hierarchy_depth}, got {requested.hierarchy_depth}",
            )
        )
    if not 0 <= requested.seed < 2**64:
        problems.append(("params.seed", f"must be a uint64, got {requested.seed}"))
    if problems:
        raise InvalidArgument.many(problems)
    return ClusteringParams(
        k=requested.k,
        hierarchy_depth=requested.hierarchy_depth or settings.default_hierarchy_depth,
        max_top_clusters=requested.max_top_clusters or settings.default_max_top_clusters,
        min_cluster_size=requested.min_cluster_size or settings.default_min_cluster_size,
        min_distinct_users=requested.min_distinct_users or settings.default_min_distinct_users,
        seed=requested.seed,
        skip_map=requested.skip_map,
        merge_small_clusters=settings.merge_small_clusters,
    )
