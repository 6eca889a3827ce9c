"""Initial gateway store: analyses, conversations, facet values, embeddings, clusters, assignments,
checkpoints.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _analysis_fk() -> sa.ForeignKey:
    return sa.ForeignKey("analyses.id", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "analyses",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("options", sa.Text, nullable=False),
        sa.Column("conversation_count", sa.Integer, nullable=False),
        sa.Column("batch_size", sa.Integer, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("facet_definitions", sa.Text, nullable=True),
        sa.Column("result_meta", sa.Text, nullable=True),
        sa.Column("upload_complete", sa.Boolean, nullable=False),
        sa.UniqueConstraint("tenant_id", "request_id", name="uq_analyses_tenant_request"),
    )
    op.create_index("ix_analyses_tenant_seq", "analyses", ["tenant_id", "seq"])
    op.create_index("ix_analyses_state", "analyses", ["state"])

    op.create_table(
        "conversations",
        sa.Column("analysis_id", sa.String(64), _analysis_fk(), primary_key=True),
        sa.Column("ordinal", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("conversation_id", sa.String(256), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("messages", sa.Text, nullable=False),
        sa.Column("metadata", sa.Text, nullable=False),
    )
    op.create_table(
        "facet_values",
        sa.Column("analysis_id", sa.String(64), _analysis_fk(), primary_key=True),
        sa.Column("ordinal", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("values_json", sa.Text, nullable=False),
    )
    op.create_table(
        "embeddings",
        sa.Column("analysis_id", sa.String(64), _analysis_fk(), primary_key=True),
        sa.Column("batch_index", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("start_ordinal", sa.Integer, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
    )
    op.create_table(
        "clusters",
        sa.Column("analysis_id", sa.String(64), _analysis_fk(), primary_key=True),
        sa.Column("cluster_id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("parent_id", sa.String(64), nullable=False),
        sa.Column("child_ids", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("distinct_users", sa.Integer, nullable=False),
        sa.Column("keywords", sa.Text, nullable=False),
        sa.Column("facets", sa.Text, nullable=False),
    )
    op.create_table(
        "assignments",
        sa.Column("analysis_id", sa.String(64), _analysis_fk(), primary_key=True),
        sa.Column("ordinal", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("cluster_id", sa.String(64), nullable=False),
        sa.Column("withheld", sa.Boolean, nullable=False),
        sa.Column("x", sa.Float, nullable=True),
        sa.Column("y", sa.Float, nullable=True),
    )
    op.create_table(
        "checkpoints",
        sa.Column("analysis_id", sa.String(64), _analysis_fk(), primary_key=True),
        sa.Column("stage", sa.String(16), primary_key=True),
        sa.Column("batch_index", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("item_count", sa.Integer, nullable=False),
        sa.Column("warnings", sa.Text, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "checkpoints",
        "assignments",
        "clusters",
        "embeddings",
        "facet_values",
        "conversations",
    ):
        op.drop_table(table)
    op.drop_index("ix_analyses_state", table_name="analyses")
    op.drop_index("ix_analyses_tenant_seq", table_name="analyses")
    op.drop_table("analyses")
