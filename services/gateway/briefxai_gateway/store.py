"""The gateway's only state: analyses, raw conversations, facet values, embeddings, clusters,
assignments with map points, and per-batch checkpoints, in SQLite (default, WAL mode) or PostgreSQL.

All methods are blocking and short; the async code calls them through ``asyncio.to_thread``.
Bulk writes use SQLAlchemy Core ``insert()`` with executemany. Progress and warnings are not
counters on the analysis row: they are sums over checkpoint rows, written in the same transaction
as the batch they describe, so a crash never leaves a count that disagrees with the data.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Engine,
    RowMapping,
    and_,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from . import schema
from .models import (
    DEFAULT_TENANT,
    STAGES,
    Analysis,
    AnalysisOptions,
    AnalysisState,
    AssignmentRow,
    ClusterNode,
    ClusterWithFacets,
    Conversation,
    FacetDefinition,
    FacetDistribution,
    FacetType,
    FacetValue,
    Message,
    PackedBatch,
    Stage,
    StageProgress,
)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
INSERT_CHUNK = 2000
ACTIVE_STATES = (AnalysisState.PENDING.value, AnalysisState.RUNNING.value)
TERMINAL_STATES = (AnalysisState.SUCCEEDED.value, AnalysisState.FAILED.value, AnalysisState.CANCELLED.value)


class DuplicateRequestId(Exception):
    """An analysis with this request_id exists already."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        super().__init__(f"an analysis with request_id {request_id!r} exists")


class StoreInconsistent(RuntimeError):
    """Stored data does not add up (for example an embedding batch is missing)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def render_warnings(counts: Mapping[str, int]) -> list[str]:
    """Human-readable warnings from the {key: count} tallies kept in checkpoints."""
    lines: list[str] = []
    for key in sorted(counts):
        n = counts[key]
        if n <= 0:
            continue
        if key.startswith("facet_failed:"):
            lines.append(f"facet '{key.split(':', 1)[1]}' could not be extracted for {n} conversation(s)")
        elif key == "request_summary_fallback":
            lines.append(
                f"{n} conversation(s) had no usable 'request' facet; their first user message was embedded"
            )
        elif key == "withheld":
            lines.append(
                f"{n} conversation(s) withheld by the privacy thresholds (cluster too small or too few users)"
            )
        else:
            lines.append(f"{key}: {n}")
    return lines


def derive_stage(state: AnalysisState, progress: Mapping[Stage, StageProgress]) -> Stage:
    """The stage an analysis is in (or stopped in): the first one not finished; VALIDATE while PENDING."""
    if state is AnalysisState.PENDING:
        return Stage.VALIDATE
    if state is AnalysisState.SUCCEEDED:
        return Stage.STORE
    for stage in STAGES:
        item = progress.get(stage)
        if item is not None and item.done < item.total:
            return stage
    return Stage.STORE


def encode_facets(values: Sequence[FacetValue]) -> str:
    """[[facet, text, number, provider, reason, failed, error], ...] with trailing defaults dropped."""
    items = []
    for v in values:
        item: list[Any] = [v.facet, v.text, v.number, v.provider, v.reason, v.failed, v.error]
        while len(item) > 1 and item[-1] in (None, "", False):
            item.pop()
        items.append(item)
    return _dumps(items)


def decode_facets(text: str) -> list[FacetValue]:
    result = []
    for item in json.loads(text):
        n = len(item)
        number = item[2] if n > 2 else None
        result.append(
            FacetValue(
                facet=item[0],
                text=item[1] if n > 1 else None,
                number=None if number is None else float(number),
                provider=(item[3] or "") if n > 3 else "",
                reason=(item[4] or "") if n > 4 else "",
                failed=bool(item[5]) if n > 5 else False,
                error=(item[6] or "") if n > 6 else "",
            )
        )
    return result


def iter_decoded(text: str) -> Iterator[tuple[str, str | None, float | None]]:
    """(facet, text, number) of the successful values in an encoded list, without building objects."""
    for item in json.loads(text):
        n = len(item)
        if n > 5 and item[5]:
            continue
        yield item[0], (item[1] if n > 1 else None), (item[2] if n > 2 else None)


def encode_messages(messages: Sequence[Message]) -> str:
    return _dumps([[m.role, m.content] for m in messages])


def decode_messages(text: str) -> list[Message]:
    return [Message(role, content) for role, content in json.loads(text)]


def definitions_to_json(definitions: Sequence[FacetDefinition]) -> str:
    return _dumps(
        [
            {
                "name": d.name,
                "type": d.type.value,
                "min": d.min,
                "max": d.max,
                "choices": list(d.choices),
                "builtin": d.builtin,
            }
            for d in definitions
        ]
    )


def definitions_from_json(text: str) -> list[FacetDefinition]:
    return [
        FacetDefinition(
            name=item["name"],
            type=FacetType(item["type"]),
            min=float(item.get("min", 0.0)),
            max=float(item.get("max", 0.0)),
            choices=tuple(item.get("choices", ())),
            builtin=bool(item.get("builtin", False)),
        )
        for item in json.loads(text)
    ]


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
    finally:
        cursor.close()


def create_store_engine(url: str) -> Engine:
    """An engine for ``url``; for SQLite the file's folder is created and WAL mode is switched on."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise ValueError("the gateway store needs a SQLite file path, not an in-memory database")
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    """Brings the schema to the newest revision with alembic's command API (config built here)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option(
        "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
    )
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class Store:
    """Blocking data access for one tenant."""

    def __init__(self, url: str, tenant_id: str = DEFAULT_TENANT) -> None:
        self.url = url
        self.tenant_id = tenant_id
        self.engine = create_store_engine(url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- analyses --------------------------------------------------------------------------------

    def _where_analysis(self, analysis_id: str) -> Any:
        a = schema.analyses.c
        return and_(a.id == analysis_id, a.tenant_id == self.tenant_id)

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
                        options=_dumps(options.to_json()),
                        conversation_count=len(conversations),
                        batch_size=batch_size,
                        create_time=now,
                        update_time=now,
                        error="",
                        facet_definitions=None,
                        result_meta=None,
                        upload_complete=upload_complete,
                    )
                )
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
        rows: list[dict[str, Any]] = []
        for offset, conversation in enumerate(conversations):
            rows.append(
                {
                    "analysis_id": analysis_id,
                    "ordinal": start_ordinal + offset,
                    "tenant_id": self.tenant_id,
                    "conversation_id": conversation.id,
                    "user_id": conversation.user_id,
                    "messages": encode_messages(conversation.messages),
                    "metadata": _dumps(conversation.metadata) if conversation.metadata else "",
                }
            )
            if len(rows) >= INSERT_CHUNK:
                conn.execute(insert(schema.conversations), rows)
                rows = []
        if rows:
            conn.execute(insert(schema.conversations), rows)

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
                    create_time=_aware(row["create_time"]),
                    update_time=_aware(row["update_time"]),
                    error=row["error"] or "",
                    warnings=render_warnings(warning_counts.get(row["id"], {})),
                    progress=progress,
                    k=int(meta.get("k", 0)),
                    k_rule=str(meta.get("k_rule", "")),
                    withheld_count=int(meta.get("withheld_count", 0)),
                )
            )
        return result

    def active_analysis_ids(self) -> list[str]:
        """PENDING or RUNNING analyses (fully uploaded), oldest first: the ones to resume at startup."""
        a = schema.analyses.c
        query = (
            select(a.id)
            .where(a.tenant_id == self.tenant_id, a.state.in_(ACTIVE_STATES), a.upload_complete.is_(True))
            .order_by(a.seq)
        )
        with self.engine.connect() as conn:
            return [row[0] for row in conn.execute(query)]

    def abandoned_upload_ids(self) -> list[str]:
        """Uploads that never completed (the gateway stopped mid-stream)."""
        a = schema.analyses.c
        query = select(a.id).where(a.tenant_id == self.tenant_id, a.upload_complete.is_(False))
        with self.engine.connect() as conn:
            return [row[0] for row in conn.execute(query)]

    def set_running(self, analysis_id: str) -> bool:
        """PENDING/RUNNING -> RUNNING; False when the analysis is terminal or gone."""
        a = schema.analyses.c
        with self.engine.begin() as conn:
            result = conn.execute(
                update(schema.analyses)
                .where(self._where_analysis(analysis_id), a.state.in_(ACTIVE_STATES))
                .values(state=AnalysisState.RUNNING.value, update_time=utcnow())
            )
            return bool(result.rowcount)

    def finish(self, analysis_id: str, state: AnalysisState, error: str = "") -> bool:
        """Moves a non-terminal analysis to a terminal ``state``; False if it was terminal already."""
        if not state.terminal:
            raise ValueError(f"{state} is not terminal")
        a = schema.analyses.c
        with self.engine.begin() as conn:
            result = conn.execute(
                update(schema.analyses)
                .where(self._where_analysis(analysis_id), a.state.in_(ACTIVE_STATES))
                .values(state=state.value, error=error, update_time=utcnow())
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
            for table in schema.ANALYSIS_TABLES:
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
            for table in schema.ANALYSIS_TABLES:
                key = table.c.id if table is schema.analyses else table.c.analysis_id
                counts[table.name] = int(
                    conn.execute(select(func.count()).select_from(table).where(key == analysis_id)).scalar()
                    or 0
                )
        return counts

    # -- checkpoints and batches -------------------------------------------------------------------

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

    def _checkpoint(
        self,
        conn: Connection,
        analysis_id: str,
        stage: Stage,
        batch_index: int,
        count: int,
        warnings: Mapping[str, int],
    ) -> None:
        conn.execute(
            insert(schema.checkpoints).values(
                analysis_id=analysis_id,
                stage=stage.value,
                batch_index=batch_index,
                tenant_id=self.tenant_id,
                item_count=count,
                warnings=_dumps(dict(warnings)) if warnings else "",
                create_time=utcnow(),
            )
        )

    def load_conversations(self, analysis_id: str, start: int, end: int) -> list[Conversation]:
        """Conversations with ordinals in [start, end), in order."""
        c = schema.conversations.c
        query = (
            select(c.conversation_id, c.user_id, c.messages, c.metadata)
            .where(
                c.analysis_id == analysis_id,
                c.tenant_id == self.tenant_id,
                c.ordinal >= start,
                c.ordinal < end,
            )
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
        f = schema.facet_values.c
        query = select(f.ordinal, f.values_json).where(
            f.analysis_id == analysis_id, f.tenant_id == self.tenant_id, f.ordinal >= start, f.ordinal < end
        )
        with self.engine.connect() as conn:
            return {int(ordinal): decode_facets(text) for ordinal, text in conn.execute(query)}

    def save_facets_batch(
        self,
        analysis_id: str,
        batch_index: int,
        start_ordinal: int,
        values: Sequence[Sequence[FacetValue]],
        warnings: Mapping[str, int],
    ) -> None:
        """Facet values of one batch and its checkpoint, in one transaction."""
        rows = [
            {
                "analysis_id": analysis_id,
                "ordinal": start_ordinal + offset,
                "tenant_id": self.tenant_id,
                "values_json": encode_facets(per_conversation),
            }
            for offset, per_conversation in enumerate(values)
        ]
        with self.engine.begin() as conn:
            if rows:
                conn.execute(insert(schema.facet_values), rows)
            self._checkpoint(conn, analysis_id, Stage.FACETS, batch_index, len(values), warnings)

    def save_embeddings_batch(
        self,
        analysis_id: str,
        batch_index: int,
        start_ordinal: int,
        vectors: PackedBatch,
        model: str,
        warnings: Mapping[str, int],
    ) -> None:
        """Packed vectors of one batch and its checkpoint, in one transaction."""
        with self.engine.begin() as conn:
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
            self._checkpoint(conn, analysis_id, Stage.EMBED, batch_index, vectors.count, warnings)

    # -- clustering input and results --------------------------------------------------------------

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

    def iter_request_texts(self, analysis_id: str, start: int = 0, end: int | None = None) -> dict[int, str]:
        """Usable `request` facet texts by ordinal (of ordinals in [start, end) when given)."""
        result = {}
        for ordinal, encoded in self._iter_encoded_facets(analysis_id, start, end):
            for facet, text, _ in iter_decoded(encoded):
                if facet == "request" and text:
                    result[ordinal] = text
        return result

    def _iter_encoded_facets(
        self, analysis_id: str, start: int = 0, end: int | None = None
    ) -> Iterator[tuple[int, str]]:
        f = schema.facet_values.c
        query = select(f.ordinal, f.values_json).where(
            f.analysis_id == analysis_id, f.tenant_id == self.tenant_id
        )
        if start:
            query = query.where(f.ordinal >= start)
        if end is not None:
            query = query.where(f.ordinal < end)
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
            .where(c.analysis_id == analysis_id, c.tenant_id == self.tenant_id)
            .order_by(c.ordinal)
        )
        if start:
            query = query.where(c.ordinal >= start)
        if end is not None:
            query = query.where(c.ordinal < end)
        with self.engine.connect() as conn:
            for row in conn.execution_options(yield_per=2000).execute(query):
                yield int(row[0]), row[1], row[2], (row[3] if with_messages else None)

    def iter_facet_rows(self, analysis_id: str) -> Iterator[tuple[int, str, str | None, float | None]]:
        """(ordinal, facet, text, number) of every successful facet value, streamed."""
        for ordinal, encoded in self._iter_encoded_facets(analysis_id):
            for facet, text, number in iter_decoded(encoded):
                yield ordinal, facet, text, number

    def save_results(
        self,
        analysis_id: str,
        clusters: Sequence[ClusterNode],
        distributions: Mapping[str, Sequence[FacetDistribution]],
        assignments: Sequence[AssignmentRow],
        meta: Mapping[str, Any],
        warnings: Mapping[str, int],
    ) -> bool:
        """Clusters, assignments and map points, the cluster/store checkpoints and SUCCEEDED, atomically.

        Returns False (and writes nothing) when the analysis is no longer RUNNING (cancelled, deleted).
        """
        a = schema.analyses.c
        with self.engine.begin() as conn:
            moved = conn.execute(
                update(schema.analyses)
                .where(self._where_analysis(analysis_id), a.state == AnalysisState.RUNNING.value)
                .values(
                    state=AnalysisState.SUCCEEDED.value,
                    result_meta=_dumps(dict(meta)),
                    update_time=utcnow(),
                )
            )
            if not moved.rowcount:
                return False  # nothing written; the transaction commits empty
            for table in (schema.clusters, schema.assignments):
                conn.execute(delete(table).where(table.c.analysis_id == analysis_id))
            cluster_rows = [
                {
                    "analysis_id": analysis_id,
                    "cluster_id": node.id,
                    "tenant_id": self.tenant_id,
                    "position": position,
                    "level": node.level,
                    "parent_id": node.parent_id,
                    "child_ids": _dumps(node.child_ids),
                    "name": node.name,
                    "description": node.description,
                    "size": node.size,
                    "distinct_users": node.distinct_users,
                    "keywords": _dumps(node.keywords),
                    "facets": _dumps(
                        [
                            {"facet": d.facet, "counts": d.counts, "mean": d.mean}
                            for d in distributions.get(node.id, ())
                        ]
                    ),
                }
                for position, node in enumerate(clusters)
            ]
            if cluster_rows:
                conn.execute(insert(schema.clusters), cluster_rows)
            rows: list[dict[str, Any]] = []
            for item in assignments:
                rows.append(
                    {
                        "analysis_id": analysis_id,
                        "ordinal": item.ordinal,
                        "tenant_id": self.tenant_id,
                        "cluster_id": item.cluster_id,
                        "withheld": item.withheld,
                        "x": item.x,
                        "y": item.y,
                    }
                )
                if len(rows) >= INSERT_CHUNK:
                    conn.execute(insert(schema.assignments), rows)
                    rows = []
            if rows:
                conn.execute(insert(schema.assignments), rows)
            count = len(assignments)
            self._checkpoint(conn, analysis_id, Stage.CLUSTER, 0, count, {})
            self._checkpoint(conn, analysis_id, Stage.STORE, 0, count, warnings)
        return True

    def load_clusters(self, analysis_id: str) -> list[ClusterWithFacets]:
        c = schema.clusters.c
        query = (
            select(schema.clusters)
            .where(c.analysis_id == analysis_id, c.tenant_id == self.tenant_id)
            .order_by(c.position)
        )
        result = []
        with self.engine.connect() as conn:
            for row in conn.execute(query).mappings():
                node = ClusterNode(
                    id=row["cluster_id"],
                    level=int(row["level"]),
                    parent_id=row["parent_id"],
                    child_ids=list(json.loads(row["child_ids"])),
                    name=row["name"],
                    description=row["description"],
                    size=int(row["size"]),
                    distinct_users=int(row["distinct_users"]),
                    keywords=list(json.loads(row["keywords"])),
                )
                facets = [
                    FacetDistribution(
                        facet=item["facet"],
                        counts={str(k): int(v) for k, v in item["counts"].items()},
                        mean=item.get("mean"),
                    )
                    for item in json.loads(row["facets"])
                ]
                result.append(ClusterWithFacets(node, facets))
        return result

    def load_result_rows(
        self, analysis_id: str, start: int, end: int
    ) -> list[tuple[int, str, AssignmentRow | None, list[FacetValue]]]:
        """(ordinal, conversation id, assignment, facet values) for ordinals in [start, end)."""
        c = schema.conversations.c
        s = schema.assignments.c
        ids_query = (
            select(c.ordinal, c.conversation_id)
            .where(
                c.analysis_id == analysis_id,
                c.tenant_id == self.tenant_id,
                c.ordinal >= start,
                c.ordinal < end,
            )
            .order_by(c.ordinal)
        )
        assign_query = select(s.ordinal, s.cluster_id, s.withheld, s.x, s.y).where(
            s.analysis_id == analysis_id, s.tenant_id == self.tenant_id, s.ordinal >= start, s.ordinal < end
        )
        with self.engine.connect() as conn:
            ids = [(int(o), cid) for o, cid in conn.execute(ids_query)]
            assigned = {
                int(o): AssignmentRow(int(o), "", cluster_id or "", bool(withheld), x, y)
                for o, cluster_id, withheld, x, y in conn.execute(assign_query)
            }
        facets = self.load_facets(analysis_id, start, end)
        result = []
        for ordinal, cid in ids:
            row = assigned.get(ordinal)
            if row is not None:
                row.conversation_id = cid
            result.append((ordinal, cid, row, facets.get(ordinal, [])))
        return result
