"""The gateway store's tables (SQLAlchemy Core). Alembic migrations in ``migrations/`` create them.

Every row carries ``tenant_id`` and ``analysis_id``; deleting an analysis deletes its rows in every
table (``Store.delete_analysis``), and the foreign keys cascade as a second line of defence. The
performance history (``performance_samples``, ``performance_runs``, migration 0003) belongs to no
analysis: it names none, and is deleted by age (``performance.retention_hours``).

Revisions of the results (migration 0004, AssignConversations): revision 0 is what the pipeline stored
(``clusters``, ``assignments``); each later one has a ``revisions`` row, every cluster's counts and
distributions in ``revision_clusters``, and the conversations it added in ``conversations`` and
``facet_values`` (ordinals after the analysis's own, in revision order) with their nearest base cluster
in ``added_assignments``. ``assignment_centroids`` keeps the base clusters' centroids, computed once.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()


def _analysis_fk() -> ForeignKey:
    return ForeignKey("analyses.id", ondelete="CASCADE")


analyses = Table(
    "analyses",
    metadata,
    # Insertion order; "newest first" listing and page tokens use it.
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("tenant_id", String(64), nullable=False),
    Column("request_id", String(128), nullable=True),
    Column("state", String(16), nullable=False),
    # JSON: resolved AnalysisOptions.
    Column("options", Text, nullable=False),
    Column("conversation_count", Integer, nullable=False),
    # Fixed at creation so that a resumed run cuts the same batches.
    Column("batch_size", Integer, nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
    Column("error", Text, nullable=False, default=""),
    # Status code name of a FAILED analysis, for example "UNAVAILABLE" (migration 0002).
    Column("error_code", String(32), nullable=False, default="", server_default=""),
    # JSON list of facet definitions, fixed at the first run so that a resumed run agrees.
    Column("facet_definitions", Text, nullable=True),
    # JSON {k, k_rule, base_algorithm, map_algorithm, withheld_count}, set by the store stage.
    Column("result_meta", Text, nullable=True),
    # False while a client stream is still uploading; such analyses are invisible and never run.
    Column("upload_complete", Boolean, nullable=False, default=True),
    # The newest revision of the results (migration 0004): 0 until AssignConversations adds one. A new
    # revision is written only where this is still the revision it was computed from.
    Column("results_revision", Integer, nullable=False, default=0, server_default="0"),
    UniqueConstraint("tenant_id", "request_id", name="uq_analyses_tenant_request"),
)
Index("ix_analyses_tenant_seq", analyses.c.tenant_id, analyses.c.seq)
Index("ix_analyses_state", analyses.c.state)

conversations = Table(
    "conversations",
    metadata,
    Column("analysis_id", String(64), _analysis_fk(), primary_key=True),
    Column("ordinal", Integer, primary_key=True, autoincrement=False),
    Column("tenant_id", String(64), nullable=False),
    Column("conversation_id", String(256), nullable=False),
    Column("user_id", String(256), nullable=False, default=""),
    # JSON [[role, content], ...]: the raw messages, stored once.
    Column("messages", Text, nullable=False),
    # JSON {key: value}, or "" when empty.
    Column("metadata", Text, nullable=False, default=""),
)
# Erasure and export of a user's data (migration 0006) find their conversations by it.
Index("ix_conversations_tenant_user", conversations.c.tenant_id, conversations.c.user_id)

# One row per conversation: its facet values as a compact JSON list (see store.encode_facets). One row
# per conversation rather than per value keeps bulk writes, reads and deletes ~8x cheaper at 100k+.
facet_values = Table(
    "facet_values",
    metadata,
    Column("analysis_id", String(64), _analysis_fk(), primary_key=True),
    Column("ordinal", Integer, primary_key=True, autoincrement=False),
    Column("tenant_id", String(64), nullable=False),
    Column("values_json", Text, nullable=False),
)

embeddings = Table(
    "embeddings",
    metadata,
    Column("analysis_id", String(64), _analysis_fk(), primary_key=True),
    Column("batch_index", Integer, primary_key=True, autoincrement=False),
    Column("tenant_id", String(64), nullable=False),
    Column("start_ordinal", Integer, nullable=False),
    Column("count", Integer, nullable=False),
    Column("dim", Integer, nullable=False),
    # count * dim little-endian float32, row-major.
    Column("data", LargeBinary, nullable=False),
    Column("model", String(256), nullable=False, default=""),
)

clusters = Table(
    "clusters",
    metadata,
    Column("analysis_id", String(64), _analysis_fk(), primary_key=True),
    Column("cluster_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    # Order in the clustering service's answer.
    Column("position", Integer, nullable=False),
    Column("level", Integer, nullable=False),
    Column("parent_id", String(64), nullable=False, default=""),
    Column("child_ids", Text, nullable=False, default="[]"),
    Column("name", Text, nullable=False, default=""),
    Column("description", Text, nullable=False, default=""),
    Column("size", Integer, nullable=False),
    Column("distinct_users", Integer, nullable=False),
    Column("keywords", Text, nullable=False, default="[]"),
    # JSON [{facet, counts, mean}], computed by the gateway.
    Column("facets", Text, nullable=False, default="[]"),
)

assignments = Table(
    "assignments",
    metadata,
    Column("analysis_id", String(64), _analysis_fk(), primary_key=True),
    Column("ordinal", Integer, primary_key=True, autoincrement=False),
    Column("tenant_id", String(64), nullable=False),
    Column("cluster_id", String(64), nullable=False, default=""),
    Column("withheld", Boolean, nullable=False, default=False),
    # The 2-D map point; NULL for withheld conversations or when no map was made.
    Column("x", Float, nullable=True),
    Column("y", Float, nullable=True),
)

# One row per finished unit of work: (facets|embed, batch i), (cluster, 0), (store, 0). Progress and
# warnings are sums over these rows, so concurrent batches never rewrite a shared counter.
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("analysis_id", String(64), _analysis_fk(), primary_key=True),
    Column("stage", String(16), primary_key=True),
    Column("batch_index", Integer, primary_key=True, autoincrement=False),
    Column("tenant_id", String(64), nullable=False),
    Column("item_count", Integer, nullable=False),
    # JSON {warning key: count} met while doing this batch, or "" when none.
    Column("warnings", Text, nullable=False, default=""),
    Column("create_time", DateTime(timezone=True), nullable=False),
)

# One row per revision of the results after the first (0 is the pipeline's own and has none).
revisions = Table(
    "revisions",
    metadata,
    Column("analysis_id", String(64), _analysis_fk(), primary_key=True),
    Column("revision", Integer, primary_key=True, autoincrement=False),
    Column("tenant_id", String(64), nullable=False),
    # The AssignConversations idempotency key, unique per analysis; NULL when none was given.
    Column("request_id", String(128), nullable=True),
    Column("create_time", DateTime(timezone=True), nullable=False),
    # Conversations in this revision: the analysis's own and every added one up to it.
    Column("conversation_count", Integer, nullable=False),
    # Added by this revision, and, in this revision: withheld (the analysis's own and the added ones
    # held back), unassigned (all added up to it), and released (added earlier, first reported here).
    Column("added_count", Integer, nullable=False),
    Column("withheld_count", Integer, nullable=False),
    Column("unassigned_count", Integer, nullable=False),
    Column("released_count", Integer, nullable=False),
    # The distance past which a conversation of this revision was left unassigned.
    Column("max_distance", Float, nullable=False),
    UniqueConstraint("tenant_id", "analysis_id", "request_id", name="uq_revisions_tenant_analysis_request"),
)

# Every cluster of the tree (all levels) as one revision reports it.
revision_clusters = Table(
    "revision_clusters",
    metadata,
    Column("analysis_id", String(64), _analysis_fk(), primary_key=True),
    Column("revision", Integer, primary_key=True, autoincrement=False),
    Column("cluster_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("distinct_users", Integer, nullable=False),
    # JSON [{facet, counts, mean}], as clusters.facets.
    Column("facets", Text, nullable=False, default="[]"),
)

# One row per conversation added by AssignConversations (its ordinal continues the analysis's own).
added_assignments = Table(
    "added_assignments",
    metadata,
    Column("analysis_id", String(64), _analysis_fk(), primary_key=True),
    Column("ordinal", Integer, primary_key=True, autoincrement=False),
    Column("tenant_id", String(64), nullable=False),
    # The revision that added it.
    Column("revision", Integer, nullable=False),
    # The nearest base cluster; "" when unassigned (farther than the threshold).
    Column("cluster_id", String(64), nullable=False, default=""),
    # Cosine distance to that cluster's centroid.
    Column("distance", Float, nullable=False),
    # The first revision that reports it in its cluster; NULL while the privacy threshold holds it back.
    Column("released_revision", Integer, nullable=True),
)
Index("ix_added_assignments_released", added_assignments.c.analysis_id, added_assignments.c.released_revision)

# The base clusters' centroids (unit vectors) and the distances of their own members to them.
assignment_centroids = Table(
    "assignment_centroids",
    metadata,
    Column("analysis_id", String(64), _analysis_fk(), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    # The embedding model of the analysis's vectors: new conversations must be embedded by the same.
    Column("model", String(256), nullable=False, default=""),
    Column("dim", Integer, nullable=False),
    # JSON list of the base cluster ids, in the order of the rows of `data`.
    Column("cluster_ids", Text, nullable=False),
    # count * dim little-endian float32, row-major.
    Column("data", LargeBinary, nullable=False),
    # Members (reported conversations) the centroids were computed from.
    Column("members", Integer, nullable=False),
    # JSON: the members' distances to their own centroid at percentiles 0, 1, ..., 100.
    Column("distance_percentiles", Text, nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
)

# One row per sample of a gateway process (``sampler.py``): its RSS and its RPC duration histograms.
performance_samples = Table(
    "performance_samples",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    # host:pid:random, one per gateway process start.
    Column("instance", String(128), nullable=False),
    Column("sample_time", DateTime(timezone=True), nullable=False),
    Column("rss_bytes", BigInteger, nullable=False),
    # JSON {method: {"type", "bounds", "counts", "count", "sum"}}: cumulative since the process started.
    Column("rpc_histograms", Text, nullable=False, default="{}"),
)
Index(
    "ix_performance_samples_tenant_time", performance_samples.c.tenant_id, performance_samples.c.sample_time
)

# One row per analysis run that succeeded: its size, run time and per-stage wall times (no analysis id).
performance_runs = Table(
    "performance_runs",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("instance", String(128), nullable=False),
    Column("finish_time", DateTime(timezone=True), nullable=False),
    Column("conversations", Integer, nullable=False),
    Column("run_seconds", Float, nullable=False),
    Column("embed_tokens", Integer, nullable=False),
    # JSON {stage: {"conversations", "seconds"}} for the stages that did work in the run.
    Column("stages", Text, nullable=False),
)
Index("ix_performance_runs_tenant_time", performance_runs.c.tenant_id, performance_runs.c.finish_time)

# API keys (migration 0006): the SHA-256 of each key, never the key (``briefxai_common.apikeys``).
api_keys = Table(
    "api_keys",
    metadata,
    # The 12 hex characters after ``bxk_``.
    Column("id", String(12), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    # viewer, analyst or admin.
    Column("role", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("description", String(200), nullable=False, default=""),
    # Key id or JWT subject of the creator; "system" for the bootstrap admin key.
    Column("created_by", String(256), nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("expire_time", DateTime(timezone=True), nullable=True),
    Column("revoke_time", DateTime(timezone=True), nullable=True),
    Column("last_used_time", DateTime(timezone=True), nullable=True),
)
Index("ix_api_keys_tenant", api_keys.c.tenant_id)

# The audit trail (migration 0006): append-only, each record chained to the previous one by its hash.
audit_log = Table(
    "audit_log",
    metadata,
    # 1, 2, 3, ... without gaps; assigned under a lock by the appender.
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("peer", String(128), nullable=False),
    Column("rpc", String(256), nullable=False),
    Column("resource", String(512), nullable=False),
    Column("action", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("status_code", String(32), nullable=False),
    Column("trace_id", String(32), nullable=False),
    # JSON object; never conversation text.
    Column("details", Text, nullable=False),
    Column("previous_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
Index("ix_audit_log_time", audit_log.c.time)

# Retention checkpoints of the audit trail (migration 0006): the records up to ``through_sequence`` were
# summarised here and deleted; ``signature`` (HMAC-SHA256) covers every other column but ``seq``.
audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("through_sequence", BigInteger, nullable=False, unique=True),
    # The hash of the record ``through_sequence``: the next record's previous_hash.
    Column("through_hash", String(64), nullable=False),
    # The previous_hash of the first record summarised: the previous checkpoint's through_hash (64 zeros
    # for the first checkpoint), which chains the checkpoints to each other.
    Column("previous_hash", String(64), nullable=False),
    Column("record_count", BigInteger, nullable=False),
    Column("first_time", DateTime(timezone=True), nullable=True),
    Column("last_time", DateTime(timezone=True), nullable=True),
    # JSON: counts of the summarised records by action and outcome.
    Column("summary", Text, nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("signature", String(128), nullable=False),
)

# The audit trail's chain head (migration 0006): one row (id 1, inserted by the migration) naming the
# newest record ever appended and its hash, signed (HMAC-SHA256, the checkpoint key) on each append, so
# that deleting the newest records is detected. The appender continues from it, not from the table.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("sequence", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    # Empty while no checkpoint key is configured.
    Column("signature", String(64), nullable=False),
)

# Children first: the order in which rows of one analysis are deleted.
ANALYSIS_TABLES: tuple[Table, ...] = (
    revision_clusters,
    added_assignments,
    revisions,
    assignment_centroids,
    checkpoints,
    assignments,
    clusters,
    embeddings,
    facet_values,
    conversations,
    analyses,
)
