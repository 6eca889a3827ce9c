"""Per-batch work and the pipeline's reads: checkpoints, facet and embedding batches, conversation,
facet and vector loads by ordinal range.

Progress and warnings are sums over checkpoint rows, each written in the same transaction as the
batch it describes, so a crash never leaves a count that disagrees with the data. A batch is written only
while this store holds the analysis's lease or nobody does (``leases.py``; LeaseLost otherwise).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence

from sqlalchemy import Connection, insert, select

from .. import schema
from ..models import STAGES, Conversation, FacetValue, PackedBatch, Stage
from .base import LeaseLost, StoreBase, StoreInconsistent, ordinal_range, utcnow
from .codecs import decode_facets, decode_messages, dumps, encode_facets, iter_decoded
from .leases import hold_lease


def write_checkpoint(
    conn: Connection,
    tenant_id: str,
    analysis_id: str,
    stage: Stage,
    batch_index: int,
    count: int,
    warnings: Mapping[str, int],
) -> None:
    """Records (stage, batch) as done with ``count`` items and its warning tallies."""
    conn.execute(
        insert(schema.checkpoints).values(
            analysis_id=analysis_id,
            stage=stage.value,
            batch_index=batch_index,
            tenant_id=tenant_id,
            item_count=count,
            warnings=dumps(dict(warnings)) if warnings else "",
            create_time=utcnow(),
        )
    )


def facet_rows(
    tenant_id: str, analysis_id: str, start_ordinal: int, values: Sequence[Sequence[FacetValue]]
) -> list[dict[str, object]]:
    """``facet_values`` rows of consecutive conversations from ``start_ordinal``."""
    return [
        {
            "analysis_id": analysis_id,
            "ordinal": start_ordinal + offset,
            "tenant_id": tenant_id,
            "values_json": encode_facets(per_conversation),
        }
        for offset, per_conversation in enumerate(values)
    ]


def read_facets(
    conn: Connection, tenant_id: str, analysis_id: str, start: int, end: int
) -> dict[int, list[FacetValue]]:
    """Facet values of ordinals in [start, end), by ordinal."""
    f = schema.facet_values.c
    query = select(f.ordinal, f.values_json).where(
        *ordinal_range(schema.facet_values, tenant_id, analysis_id, start, end)
    )
    return {int(ordinal): decode_facets(text) for ordinal, text in conn.execute(query)}


class CheckpointRepository(StoreBase):
    """Batch checkpoints with the facet values and vectors they cover, and the reads that feed the
    pipeline's stages."""

    def _hold(self, conn: Connection, analysis_id: str) -> None:
        if not hold_lease(conn, self.tenant_id, analysis_id, self.owner):
            raise LeaseLost(analysis_id)

    def done_batches(self, analysis_id: str) -> dict[Stage, set[int]]:
        c = schema.checkpoints.c
        result: dict[Stage, set[int]] = {stage: set() for stage in STAGES}
        with self.engine.connect() as conn:
            for stage, index in conn.execute(
                select(c.stage, c.batch_index).where(
                    c.analysis_id == analysis_id, c.tenant_id == self.tenant_id
                )
            ):
                result[Stage(stage)].add(int(index))
        return result

    def load_conversations(self, analysis_id: str, start: int, end: int) -> list[Conversation]:
        """Conversations with ordinals in [start, end), in order."""
        c = schema.conversations.c
        query = (
            select(c.conversation_id, c.user_id, c.messages, c.metadata)
            .where(*ordinal_range(schema.conversations, self.tenant_id, analysis_id, start, end))
            .order_by(c.ordinal)
        )
        with self.engine.connect() as conn:
            return [
                Conversation(
                    id=cid,
                    user_id=user_id,
                    messages=decode_messages(messages),
                    metadata=json.loads(metadata) if metadata else {},
                )
                for cid, user_id, messages, metadata in conn.execute(query)
            ]

    def load_facets(self, analysis_id: str, start: int, end: int) -> dict[int, list[FacetValue]]:
        """Facet values of ordinals in [start, end), by ordinal."""
        with self.engine.connect() as conn:
            return read_facets(conn, self.tenant_id, analysis_id, start, end)

    def save_facets_batch(
        self,
        analysis_id: str,
        batch_index: int,
        start_ordinal: int,
        values: Sequence[Sequence[FacetValue]],
        warnings: Mapping[str, int],
    ) -> None:
        """Facet values of one batch and its checkpoint, in one transaction (LeaseLost: none written)."""
        rows = facet_rows(self.tenant_id, analysis_id, start_ordinal, values)
        with self.engine.begin() as conn:
            self._hold(conn, analysis_id)
            if rows:
                conn.execute(insert(schema.facet_values), rows)
            write_checkpoint(
                conn, self.tenant_id, analysis_id, Stage.FACETS, batch_index, len(values), warnings
            )

    def save_embeddings_batch(
        self,
        analysis_id: str,
        batch_index: int,
        start_ordinal: int,
        vectors: PackedBatch,
        model: str,
        warnings: Mapping[str, int],
    ) -> None:
        """Packed vectors of one batch and its checkpoint, in one transaction (LeaseLost: none written)."""
        with self.engine.begin() as conn:
            self._hold(conn, analysis_id)
            conn.execute(
                insert(schema.embeddings).values(
                    analysis_id=analysis_id,
                    batch_index=batch_index,
                    tenant_id=self.tenant_id,
                    start_ordinal=start_ordinal,
                    count=vectors.count,
                    dim=vectors.dim,
                    data=vectors.data,
                    model=model,
                )
            )
            write_checkpoint(
                conn, self.tenant_id, analysis_id, Stage.EMBED, batch_index, vectors.count, warnings
            )

    def load_vector_range(self, analysis_id: str, start: int, end: int) -> PackedBatch:
        """The vectors of ordinals [start, end) as one packed block, cut from the embedding batches that
        overlap the range (any alignment); StoreInconsistent when one of them is missing or malformed."""
        if not 0 <= start <= end:
            raise ValueError(f"bad ordinal range [{start}, {end})")
        e = schema.embeddings.c
        query = (
            select(e.start_ordinal, e.count, e.dim, e.data)
            .where(
                e.analysis_id == analysis_id,
                e.tenant_id == self.tenant_id,
                e.start_ordinal < end,
                e.start_ordinal + e.count > start,
            )
            .order_by(e.start_ordinal)
        )
        parts: list[bytes | memoryview] = []
        dim = 0
        next_ordinal = start
        with self.engine.connect() as conn:
            for batch_start, count, row_dim, data in conn.execution_options(yield_per=8).execute(query):
                if batch_start > next_ordinal:
                    raise StoreInconsistent(f"embeddings of {analysis_id}: gap at ordinal {next_ordinal}")
                if dim and row_dim != dim:
                    raise StoreInconsistent(f"embeddings of {analysis_id}: dim {row_dim} != {dim}")
                if len(data) != count * row_dim * 4:
                    raise StoreInconsistent(
                        f"embeddings of {analysis_id}: batch at {batch_start} has a bad length"
                    )
                dim = row_dim
                row_bytes = row_dim * 4
                first = next_ordinal - batch_start
                last = min(end, batch_start + count) - batch_start
                whole = first == 0 and last == count
                parts.append(data if whole else memoryview(data)[first * row_bytes : last * row_bytes])
                next_ordinal = batch_start + last
        if next_ordinal != end:
            raise StoreInconsistent(
                f"embeddings of {analysis_id}: ordinals [{next_ordinal}, {end}) have no vectors"
            )
        packed = parts[0] if len(parts) == 1 and isinstance(parts[0], bytes) else b"".join(parts)
        parts.clear()
        return PackedBatch(data=packed, dim=dim, count=end - start)

    def request_texts_by_index(
        self, analysis_id: str, start: int = 0, end: int | None = None
    ) -> dict[int, str]:
        """Usable `request` facet texts by ordinal (of ordinals in [start, end) when given)."""
        result = {}
        for ordinal, encoded in self._iter_encoded_facets(analysis_id, start, end):
            for facet, text, _ in iter_decoded(encoded):
                if facet == "request" and text:
                    result[ordinal] = text
        return result

    def iter_facet_rows(self, analysis_id: str) -> Iterator[tuple[int, str, str | None, float | None]]:
        """(ordinal, facet, text, number) of every successful facet value, streamed."""
        for ordinal, encoded in self._iter_encoded_facets(analysis_id):
            for facet, text, number in iter_decoded(encoded):
                yield ordinal, facet, text, number

    def _iter_encoded_facets(
        self, analysis_id: str, start: int = 0, end: int | None = None
    ) -> Iterator[tuple[int, str]]:
        f = schema.facet_values.c
        query = select(f.ordinal, f.values_json).where(
            *ordinal_range(schema.facet_values, self.tenant_id, analysis_id, start, end)
        )
        with self.engine.connect() as conn:
            for ordinal, text in conn.execution_options(yield_per=2000).execute(query):
                yield int(ordinal), text

    def iter_conversation_rows(
        self, analysis_id: str, *, with_messages: bool, start: int = 0, end: int | None = None
    ) -> Iterator[tuple[int, str, str, str | None]]:
        """(ordinal, conversation id, user id, messages JSON or None), in ordinal order, streamed; only
        ordinals in [start, end) when given."""
        c = schema.conversations.c
        columns = [c.ordinal, c.conversation_id, c.user_id]
        if with_messages:
            columns.append(c.messages)
        query = (
            select(*columns)
            .where(*ordinal_range(schema.conversations, self.tenant_id, analysis_id, start, end))
            .order_by(c.ordinal)
        )
        with self.engine.connect() as conn:
            for row in conn.execution_options(yield_per=2000).execute(query):
                yield int(row[0]), row[1], row[2], (row[3] if with_messages else None)
