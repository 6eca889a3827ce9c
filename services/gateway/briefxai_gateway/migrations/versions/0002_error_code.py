"""analyses.error_code: the status code name of a FAILED analysis (google.rpc.Status.code on the API).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("analyses") as batch:
        batch.add_column(sa.Column("error_code", sa.String(32), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("analyses") as batch:
        batch.drop_column("error_code")
