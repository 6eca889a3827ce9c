"""Analysis rows: create (inline or uploaded), read, list, state transitions, delete.

An analysis is created with its lease row (``leases.py``); the pipeline's own transitions (RUNNING,
FAILED) are fenced by the lease, a cancel is not."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import Connection, RowMapping, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from .. import schema
from ..analysis_warnings import render_warnings
from ..models import (
    STAGES,
    Analysis,
    AnalysisOptions,
    AnalysisState,
    Conversation,
    FacetDefinition,
    Stage,
    StageProgress,
)
from ..progress import derive_stage
from .base import (
    ACTIVE_STATES,
    DuplicateRequestId,
    StoreBase,
    StoreInconsistent,
    aware,
    insert_chunked,
    utcnow,
)
from .codecs import definitions_from_json, definitions_to_json, dumps, encode_messages
from .leases import analysis_leases, hold_lease, lease_row

# Children first, as schema.ANALYSIS_TABLES: the rows of one analysis in every table.
TABLES = (analysis_leases, *schema.ANALYSIS_TABLES)


def insert_conversations(
    conn: Connection,
    tenant_id: str,
    analysis_id: str,
    start_ordinal: int,
    conversations: Sequence[Conversation],
) -> None:
    """Stores ``conversations`` (raw messages, once) at ordinals from ``start_ordinal``."""
    insert_chunked(
        conn,
        schema.conversations,
        (
            {
                "analysis_id": analysis_id,
                "ordinal": start_ordinal + offset,
                "tenant_id": tenant_id,
                "conversation_id": conversation.id,
                "user_id": conversation.user_id,
                "messages": encode_messages(conversation.messages),
                "metadata": dumps(conversation.metadata) if conversation.metadata else "",
            }
            for offset, conversation in enumerate(conversations)
        ),
    )


class AnalysisRepository(StoreBase):
    """Analyses and their uploaded conversations, with progress and warnings summed from checkpoints."""

    def create_analysis(
        self,
        analysis_id: str,
        *,
        request_id: str,
        options: AnalysisOptions,
        batch_size: int,
        conversations: Sequence[Conversation] = (),
        upload_complete: bool = True,
    ) -> Analysis:
        """Inserts the analysis (PENDING) and its conversations in one transaction.

        Raises DuplicateRequestId when ``request_id`` is taken.
        """
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(schema.analyses).values(
                        id=analysis_id,
                        tenant_id=self.tenant_id,
                        request_id=request_id or None,
                        state=AnalysisState.PENDING.value,
                        options=dumps(options.to_json()),
                        conversation_count=len(conversations),
                        batch_size=batch_size,
                        create_time=now,
                        update_time=now,
                        error="",
                        error_code="",
                        facet_definitions=None,
                        result_meta=None,
                        upload_complete=upload_complete,
                    )
                )
                conn.execute(insert(analysis_leases).values(lease_row(self.tenant_id, analysis_id)))
                self._insert_conversations(conn, analysis_id, 0, conversations)
        except IntegrityError as exc:
            if request_id and self.find_by_request_id(request_id, include_uploading=True) is not None:
                raise DuplicateRequestId(request_id) from exc
            raise
        analysis = self.get_analysis(analysis_id, include_uploading=True)
        if analysis is None:
            raise StoreInconsistent(f"analysis {analysis_id} vanished right after its creation")
        return analysis

    def _insert_conversations(
        self, conn: Connection, analysis_id: str, start_ordinal: int, conversations: Sequence[Conversation]
    ) -> None:
        insert_conversations(conn, self.tenant_id, analysis_id, start_ordinal, conversations)

    def append_conversations(
        self, analysis_id: str, start_ordinal: int, conversations: Sequence[Conversation]
    ) -> None:
        """Adds one uploaded batch (the analysis must still be uploading)."""
        with self.engine.begin() as conn:
            self._insert_conversations(conn, analysis_id, start_ordinal, conversations)

    def complete_upload(self, analysis_id: str, conversation_count: int) -> Analysis:
        with self.engine.begin() as conn:
            conn.execute(
                update(schema.analyses)
                .where(self._where_analysis(analysis_id))
                .values(conversation_count=conversation_count, upload_complete=True, update_time=utcnow())
            )
        analysis = self.get_analysis(analysis_id)
        if analysis is None:
            raise StoreInconsistent(f"uploaded analysis {analysis_id} vanished")
        return analysis

    def find_by_request_id(self, request_id: str, *, include_uploading: bool = False) -> Analysis | None:
        a = schema.analyses.c
        with self.engine.connect() as conn:
            query = select(schema.analyses).where(a.tenant_id == self.tenant_id, a.request_id == request_id)
            row = conn.execute(query).mappings().first()
            if row is None or (not row["upload_complete"] and not include_uploading):
                return None
            return self._analyses_from_rows(conn, [row])[0]

    def get_analysis(self, analysis_id: str, *, include_uploading: bool = False) -> Analysis | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(schema.analyses).where(self._where_analysis(analysis_id)))
                .mappings()
                .first()
            )
            if row is None or (not row["upload_complete"] and not include_uploading):
                return None
            return self._analyses_from_rows(conn, [row])[0]

    def list_analyses(self, page_size: int, before_seq: int | None) -> tuple[list[Analysis], int | None]:
        """Newest first. Returns the page and the seq to continue before, or None on the last page."""
        a = schema.analyses.c
        query = select(schema.analyses).where(a.tenant_id == self.tenant_id, a.upload_complete.is_(True))
        if before_seq is not None:
            query = query.where(a.seq < before_seq)
        query = query.order_by(a.seq.desc()).limit(page_size + 1)
        with self.engine.connect() as conn:
            rows = list(conn.execute(query).mappings())
            more = len(rows) > page_size
            rows = rows[:page_size]
            analyses = self._analyses_from_rows(conn, rows)
        next_seq = int(rows[-1]["seq"]) if more and rows else None
        return analyses, next_seq

    def _analyses_from_rows(self, conn: Connection, rows: Sequence[RowMapping]) -> list[Analysis]:
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        c = schema.checkpoints.c
        done: dict[str, dict[str, int]] = {}
        for analysis_id, stage, total in conn.execute(
            select(c.analysis_id, c.stage, func.sum(c.item_count))
            .where(c.tenant_id == self.tenant_id, c.analysis_id.in_(ids))
            .group_by(c.analysis_id, c.stage)
        ):
            done.setdefault(analysis_id, {})[stage] = int(total or 0)
        warning_counts: dict[str, dict[str, int]] = {}
        for analysis_id, text in conn.execute(
            select(c.analysis_id, c.warnings).where(
                c.tenant_id == self.tenant_id, c.analysis_id.in_(ids), c.warnings != ""
            )
        ):
            tally = warning_counts.setdefault(analysis_id, {})
            for key, n in json.loads(text).items():
                tally[key] = tally.get(key, 0) + int(n)
        result = []
        for row in rows:
            count = int(row["conversation_count"])
            per_stage = done.get(row["id"], {})
            progress = {Stage.VALIDATE: StageProgress(Stage.VALIDATE, count, count)}
            for stage in STAGES[1:]:
                progress[stage] = StageProgress(stage, min(per_stage.get(stage.value, 0), count), count)
            meta = json.loads(row["result_meta"]) if row["result_meta"] else {}
            state = AnalysisState(row["state"])
            result.append(
                Analysis(
                    id=row["id"],
                    tenant_id=row["tenant_id"],
                    state=state,
                    stage=derive_stage(state, progress),
                    options=AnalysisOptions.from_json(json.loads(row["options"])),
                    request_id=row["request_id"] or "",
                    conversation_count=count,
                    batch_size=int(row["batch_size"]),
                    create_time=aware(row["create_time"]),
                    update_time=aware(row["update_time"]),
                    error=row["error"] or "",
                    error_code=row["error_code"] or "",
                    warnings=render_warnings(warning_counts.get(row["id"], {})),
                    progress=progress,
                    k=int(meta.get("k", 0)),
                    k_rule=str(meta.get("k_rule", "")),
                    withheld_count=int(meta.get("withheld_count", 0)),
                    results_revision=int(row["results_revision"] or 0),
                )
            )
        return result

    def abandoned_uploads(self) -> list[tuple[str, str]]:
        """(tenant, analysis id) of the uploads, of every tenant, that never completed (the gateway
        stopped mid-stream)."""
        a = schema.analyses.c
        query = select(a.tenant_id, a.id).where(a.upload_complete.is_(False))
        with self.engine.connect() as conn:
            return [(row[0], row[1]) for row in conn.execute(query)]

    def tenant_of(self, analysis_id: str) -> str | None:
        """The tenant an analysis belongs to, whoever asks (None: no such analysis). For the gateway's
        own work on an analysis (a pipeline run), never to answer a caller."""
        a = schema.analyses.c
        with self.engine.connect() as conn:
            tenant: str | None = conn.execute(select(a.tenant_id).where(a.id == analysis_id)).scalar()
        return tenant

    def set_running(self, analysis_id: str) -> bool:
        """PENDING/RUNNING -> RUNNING; False when the analysis is terminal or gone, or another gateway
        holds its lease."""
        a = schema.analyses.c
        with self.engine.begin() as conn:
            if not hold_lease(conn, self.tenant_id, analysis_id, self.owner):
                return False
            result = conn.execute(
                update(schema.analyses)
                .where(self._where_analysis(analysis_id), a.state.in_(ACTIVE_STATES))
                .values(state=AnalysisState.RUNNING.value, update_time=utcnow())
            )
            return bool(result.rowcount)

    def finish(self, analysis_id: str, state: AnalysisState, error: str = "", error_code: str = "") -> bool:
        """Moves a non-terminal analysis to a terminal ``state``; False if it was terminal already.

        ``error_code`` is the status code name of a failure (see ``AnalysisFailure``). A CANCELLED is the
        user's and always applies; another outcome is a run's verdict, given only while this store holds
        the analysis's lease or nobody does (False otherwise: the gateway that took the run over decides).
        """
        if not state.terminal:
            raise ValueError(f"{state} is not terminal")
        a = schema.analyses.c
        with self.engine.begin() as conn:
            if state is not AnalysisState.CANCELLED and not hold_lease(
                conn, self.tenant_id, analysis_id, self.owner
            ):
                return False
            result = conn.execute(
                update(schema.analyses)
                .where(self._where_analysis(analysis_id), a.state.in_(ACTIVE_STATES))
                .values(state=state.value, error=error, error_code=error_code, update_time=utcnow())
            )
            return bool(result.rowcount)

    def set_facet_definitions(self, analysis_id: str, definitions: Sequence[FacetDefinition]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(schema.analyses)
                .where(self._where_analysis(analysis_id))
                .values(facet_definitions=definitions_to_json(definitions))
            )

    def facet_definitions(self, analysis_id: str) -> list[FacetDefinition] | None:
        a = schema.analyses.c
        with self.engine.connect() as conn:
            text = conn.execute(select(a.facet_definitions).where(self._where_analysis(analysis_id))).scalar()
        return definitions_from_json(text) if text else None

    def delete_analysis(self, analysis_id: str) -> bool:
        """Deletes every row of the analysis in every table; False when there was no such analysis."""
        with self.engine.begin() as conn:
            existed = False
            for table in TABLES:
                key = table.c.id if table is schema.analyses else table.c.analysis_id
                result = conn.execute(
                    delete(table).where(key == analysis_id, table.c.tenant_id == self.tenant_id)
                )
                if table is schema.analyses:
                    existed = bool(result.rowcount)
            return existed

    def row_counts(self, analysis_id: str) -> dict[str, int]:
        """Rows per table for one analysis (tests, admin)."""
        counts = {}
        with self.engine.connect() as conn:
            for table in TABLES:
                key = table.c.id if table is schema.analyses else table.c.analysis_id
                counts[table.name] = int(
                    conn.execute(select(func.count()).select_from(table).where(key == analysis_id)).scalar()
                    or 0
                )
        return counts
