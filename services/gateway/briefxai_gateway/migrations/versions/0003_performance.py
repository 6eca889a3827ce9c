"""performance_samples and performance_runs: the history behind GetPerformanceReport.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "performance_samples",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("instance", sa.String(128), nullable=False),
        sa.Column("sample_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rss_bytes", sa.BigInteger, nullable=False),
        sa.Column("rpc_histograms", sa.Text, nullable=False),
    )
    op.create_index("ix_performance_samples_tenant_time", "performance_samples", ["tenant_id", "sample_time"])
    op.create_table(
        "performance_runs",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("instance", sa.String(128), nullable=False),
        sa.Column("finish_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("conversations", sa.Integer, nullable=False),
        sa.Column("run_seconds", sa.Float, nullable=False),
        sa.Column("embed_tokens", sa.Integer, nullable=False),
        sa.Column("stages", sa.Text, nullable=False),
    )
    op.create_index("ix_performance_runs_tenant_time", "performance_runs", ["tenant_id", "finish_time"])


def downgrade() -> None:
    op.drop_index("ix_performance_runs_tenant_time", table_name="performance_runs")
    op.drop_table("performance_runs")
    op.drop_index("ix_performance_samples_tenant_time", table_name="performance_samples")
    op.drop_table("performance_samples")
