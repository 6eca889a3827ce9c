"""Revisions of the results (AssignConversations): analyses.results_revision, revisions,
revision_clusters, added_assignments and assignment_centroids.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _analysis_fk() -> sa.ForeignKey:
    return sa.ForeignKey("analyses.id", ondelete="CASCADE")


def upgrade() -> None:
    with op.batch_alter_table("analyses") as batch:
        batch.add_column(sa.Column("results_revision", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "revisions",
        sa.Column("analysis_id", sa.String(64), _analysis_fk(), primary_key=True),
        sa.Column("revision", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("conversation_count", sa.Integer, nullable=False),
        sa.Column("added_count", sa.Integer, nullable=False),
        sa.Column("withheld_count", sa.Integer, nullable=False),
        sa.Column("unassigned_count", sa.Integer, nullable=False),
        sa.Column("released_count", sa.Integer, nullable=False),
        sa.Column("max_distance", sa.Float, nullable=False),
        sa.UniqueConstraint(
            "tenant_id", "analysis_id", "request_id", name="uq_revisions_tenant_analysis_request"
        ),
    )
    op.create_table(
        "revision_clusters",
        sa.Column("analysis_id", sa.String(64), _analysis_fk(), primary_key=True),
        sa.Column("revision", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("cluster_id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("distinct_users", sa.Integer, nullable=False),
        sa.Column("facets", sa.Text, nullable=False),
    )
    op.create_table(
        "added_assignments",
        sa.Column("analysis_id", sa.String(64), _analysis_fk(), primary_key=True),
        sa.Column("ordinal", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("cluster_id", sa.String(64), nullable=False),
        sa.Column("distance", sa.Float, nullable=False),
        sa.Column("released_revision", sa.Integer, nullable=True),
    )
    op.create_index(
        "ix_added_assignments_released", "added_assignments", ["analysis_id", "released_revision"]
    )
    op.create_table(
        "assignment_centroids",
        sa.Column("analysis_id", sa.String(64), _analysis_fk(), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("cluster_ids", sa.Text, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("members", sa.Integer, nullable=False),
        sa.Column("distance_percentiles", sa.Text, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("assignment_centroids")
    op.drop_index("ix_added_assignments_released", table_name="added_assignments")
    op.drop_table("added_assignments")
    op.drop_table("revision_clusters")
    op.drop_table("revisions")
    with op.batch_alter_table("analyses") as batch:
        batch.drop_column("results_revision")
