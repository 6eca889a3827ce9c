"""analysis_leases: which gateway runs an analysis and until when (several gateways on one database).

Every existing analysis gets a free lease; a PENDING or RUNNING one is claimed by the first gateway that
starts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "analysis_leases",
        sa.Column(
            "analysis_id",
            sa.String(64),
            sa.ForeignKey("analyses.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    )
    op.execute(
        "INSERT INTO analysis_leases (analysis_id, tenant_id, attempts) SELECT id, tenant_id, 0 FROM analyses"
    )


def downgrade() -> None:
    op.drop_table("analysis_leases")
