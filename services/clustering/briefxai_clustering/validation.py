"""Request checks with field paths (``vectors.data``, ``ids[3]``, ``params.k``), and server defaults.

Decisions on edge cases:

- Fewer than 2 vectors: INVALID_ARGUMENT on ``vectors.count`` (nothing to group).
- ``ids`` must have one entry per vector; ``user_ids`` and ``texts`` are either empty (absent) or have
  one entry per vector. Ids are non-empty, at most 256 characters, and unique.
- Vectors must be finite and non-zero; they need not be unit length (they are normalised).
- An unset optional param takes the server's default. A set ``params.k`` must be 2..``max_k``, a set
  ``params.hierarchy_depth`` 0..``max_hierarchy_depth`` (0: the base level only), and the privacy
  thresholds and ``max_top_clusters`` at least 1. A ``params.k`` above the number of distinct vectors
  is clamped (reported in ``k_rule``).
- ``min_cluster_size`` / ``min_distinct_users`` larger than the input are allowed: everything is then
  withheld, which is the documented, privacy-safe result.

The streamed request (``StreamAssembler``) applies the same rules chunk by chunk; its field paths name
the message: ``header``, ``header.count``, ``chunks[3].vectors.data``, ``chunks[3].ids[5]`` (chunks are
counted from 0, the header not included). ``user_ids`` and ``texts`` are then either sent with every
chunk (one entry per vector of the chunk) or with none.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from briefxai_clustering.model import ClusteringParams, FloatArray
from briefxai_clustering.settings import ClusteringSettings
from briefxai_common.errors import InvalidArgument
from briefxai_common.vectors import WIRE_DTYPE, unpack_vectors

MAX_ID_CHARS = 256
MAX_REPORTED_VIOLATIONS = 20


@dataclass(frozen=True)
class RequestedParams:
    """``ClusteringParams`` as sent: None where the client left an optional field unset (server default)."""

    k: int | None = None
    hierarchy_depth: int | None = None
    max_top_clusters: int | None = None
    min_cluster_size: int | None = None
    min_distinct_users: int | None = None
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
    """The (count, dim) float32 array; rejects NaN, infinity and all-zero rows (``vectors.data``).

    The array is a read-only view of ``data`` (no copy): the pipeline never writes into its input.
    """
    try:
        vectors = unpack_vectors(data, dim, count, copy=False)
    except ValueError as error:
        raise InvalidArgument("vectors.data", str(error)) from error
    check_values(vectors, "vectors.data")
    return vectors


def check_values(vectors: FloatArray, path: str) -> None:
    """Rejects rows holding NaN or infinity and all-zero rows, naming the first one by its row index."""
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise InvalidArgument(
            path,
            f"vector {int(bad[0])} holds NaN or infinity ({bad.size} such vectors); values must be finite",
        )
    zero = ~np.any(vectors != 0, axis=1)
    if zero.any():
        bad = np.flatnonzero(zero)
        raise InvalidArgument(
            path, f"vector {int(bad[0])} is all zeros ({bad.size} such vectors); it has no direction"
        )


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
    """Applies server defaults to unset fields and checks the limits of set ones."""
    problems: list[tuple[str, str]] = []
    if requested.k is not None and not 2 <= requested.k <= settings.max_k:
        problems.append(
            ("params.k", f"must be 2..{settings.max_k} (max_k), got {requested.k}; leave unset for automatic")
        )
    if requested.hierarchy_depth is not None and requested.hierarchy_depth > settings.max_hierarchy_depth:
        problems.append(
            (
                "params.hierarchy_depth",
                f"at most {settings.max_hierarchy_depth}, got {requested.hierarchy_depth}",
            )
        )
    for name in ("max_top_clusters", "min_cluster_size", "min_distinct_users"):
        value = getattr(requested, name)
        if value is not None and value < 1:
            problems.append(
                (f"params.{name}", f"must be at least 1, got {value}; leave unset for the default")
            )
    if not 0 <= requested.seed < 2**64:
        problems.append(("params.seed", f"must be a uint64, got {requested.seed}"))
    if problems:
        raise InvalidArgument.many(problems)
    return ClusteringParams(
        k=requested.k or 0,
        hierarchy_depth=_or_default(requested.hierarchy_depth, settings.default_hierarchy_depth),
        max_top_clusters=_or_default(requested.max_top_clusters, settings.default_max_top_clusters),
        min_cluster_size=_or_default(requested.min_cluster_size, settings.default_min_cluster_size),
        min_distinct_users=_or_default(requested.min_distinct_users, settings.default_min_distinct_users),
        seed=requested.seed,
        skip_map=requested.skip_map,
        merge_small_clusters=settings.merge_small_clusters,
    )


def _or_default(value: int | None, default: int) -> int:
    return default if value is None else value


@dataclass
class StreamAssembler:
    """Builds one clustering input from a header and chunks, checking each message as it arrives.

    The header fixes ``count`` and ``dim``; one ``(count, dim)`` float32 array is allocated then and each
    chunk's bytes are copied straight into their rows (no other copy of the vectors exists). Ids are
    checked for emptiness, length and uniqueness across the whole stream as they come.
    """

    max_vectors: int
    max_bytes: int
    count: int = 0
    dim: int = 0
    vectors: FloatArray | None = None
    ids: list[str] = field(default_factory=list)
    user_ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    chunks: int = 0
    _has_user_ids: bool | None = None
    _has_texts: bool | None = None
    _chunk_starts: list[int] = field(default_factory=list)
    _first_seen: dict[str, int] = field(default_factory=dict)

    @property
    def started(self) -> bool:
        return self.vectors is not None

    def header(self, count: int, dim: int) -> None:
        """Checks the header and allocates the array; INVALID_ARGUMENT on ``header.*``."""
        if self.started:
            raise InvalidArgument("header", f"a second header arrived after chunk {self.chunks - 1}")
        problems: list[tuple[str, str]] = []
        if dim == 0:
            problems.append(("header.dim", "must be at least 1"))
        if count < 2:
            problems.append(("header.count", f"at least 2 vectors are needed to cluster, got {count}"))
        elif count > self.max_vectors:
            problems.append(("header.count", f"at most {self.max_vectors} vectors per request, got {count}"))
        elif count * dim * WIRE_DTYPE.itemsize > self.max_bytes:
            problems.append(
                (
                    "header.dim",
                    f"count * dim * 4 = {count * dim * WIRE_DTYPE.itemsize} bytes of vectors, above the "
                    f"limit of {self.max_bytes} bytes",
                )
            )
        if problems:
            raise InvalidArgument.many(problems)
        self.count, self.dim = count, dim
        self.vectors = np.empty((count, dim), dtype=np.float32)

    def check_chunk(
        self,
        data_length: int,
        dim: int,
        count: int,
        ids: Sequence[str],
        user_ids: Sequence[str],
        texts: Sequence[str],
    ) -> None:
        """Every count and length of the next chunk, all violations at once (no state changes)."""
        prefix = f"chunks[{self.chunks}]"
        if not self.started:
            raise InvalidArgument("header", f"the first message must be the header, got {prefix}")
        problems: list[tuple[str, str]] = []
        received = len(self.ids)
        if dim != self.dim:
            problems.append((f"{prefix}.vectors.dim", f"must equal header.dim = {self.dim}, got {dim}"))
        if count == 0:
            problems.append((f"{prefix}.vectors.count", "a chunk holds at least 1 vector"))
        elif received + count > self.count:
            problems.append(
                (
                    f"{prefix}.vectors.count",
                    f"{count} more vectors after {received} would exceed header.count = {self.count}",
                )
            )
        if dim == self.dim and data_length != dim * count * WIRE_DTYPE.itemsize:
            problems.append(
                (
                    f"{prefix}.vectors.data",
                    f"holds {data_length} bytes, expected count * dim * 4 = {count} * {dim} * 4 = "
                    f"{count * dim * WIRE_DTYPE.itemsize}",
                )
            )
        if len(ids) != count:
            problems.append(
                (f"{prefix}.ids", f"one id per vector is needed: {count} vectors, {len(ids)} ids")
            )
        for name, values, present in (
            ("user_ids", user_ids, self._has_user_ids),
            ("texts", texts, self._has_texts),
        ):
            if values and len(values) != count:
                problems.append(
                    (
                        f"{prefix}.{name}",
                        f"must be empty or have one entry per vector of the chunk ({count}), got {len(values)}",
                    )
                )
            elif present is not None and present != bool(values):
                had = "had them" if present else "had none"
                problems.append(
                    (f"{prefix}.{name}", f"sent with every chunk or with none: the earlier chunks {had}")
                )
        if problems:
            raise InvalidArgument.many(problems)
        self._check_ids(ids, prefix)

    def _check_ids(self, ids: Sequence[str], prefix: str) -> None:
        problems: list[tuple[str, str]] = []
        offset = len(self.ids)
        new: dict[str, int] = {}
        for i, conversation_id in enumerate(ids):
            if not conversation_id:
                problems.append((f"{prefix}.ids[{i}]", "must not be empty"))
            elif len(conversation_id) > MAX_ID_CHARS:
                problems.append(
                    (f"{prefix}.ids[{i}]", f"at most {MAX_ID_CHARS} characters, got {len(conversation_id)}")
                )
            elif conversation_id in new or conversation_id in self._first_seen:
                earlier = new.get(conversation_id, self._first_seen.get(conversation_id, 0))
                problems.append(
                    (f"{prefix}.ids[{i}]", f"duplicates {self._id_path(earlier)} ({conversation_id!r})")
                )
            else:
                new[conversation_id] = offset + i
            if len(problems) >= MAX_REPORTED_VIOLATIONS:
                break
        if problems:
            raise InvalidArgument.many(problems)

    def _id_path(self, index: int) -> str:
        """``chunks[c].ids[j]`` of the ``index``-th id of the stream (including the chunk being checked)."""
        starts = [*self._chunk_starts, len(self.ids)]
        chunk = bisect_right(starts, index) - 1
        return f"chunks[{chunk}].ids[{index - starts[chunk]}]"

    def add_chunk(
        self, data: bytes, ids: Sequence[str], user_ids: Sequence[str], texts: Sequence[str]
    ) -> None:
        """Copies a checked chunk's vectors into their rows, checks their values, keeps its strings.

        Call after ``check_chunk``; blocking (runs in a worker thread for large chunks).
        """
        assert self.vectors is not None, "check_chunk first"  # noqa: S101  invariant for mypy, not a check on input
        start = len(self.ids)
        count = len(ids)
        rows = self.vectors[start : start + count]
        rows[...] = np.frombuffer(data, dtype=WIRE_DTYPE).reshape(count, self.dim)
        check_values(rows, f"chunks[{self.chunks}].vectors.data")
        for i, conversation_id in enumerate(ids):
            self._first_seen[conversation_id] = start + i
        self._chunk_starts.append(start)
        self.ids.extend(ids)
        self.user_ids.extend(user_ids)
        self.texts.extend(texts)
        self._has_user_ids = bool(user_ids)
        self._has_texts = bool(texts)
        self.chunks += 1

    def finish(self) -> FloatArray:
        """The filled array, once every vector the header announced has arrived."""
        if self.vectors is None:
            raise InvalidArgument("header", "the stream ended without a header")
        if len(self.ids) != self.count:
            raise InvalidArgument(
                "header.count",
                f"the stream ended after {len(self.ids)} vectors in {self.chunks} chunks, "
                f"header.count is {self.count}",
            )
        return self.vectors
