"""Wrong staff logins by client address (a keyed hash): the login throttle, shared by every
process on the database and kept across restarts.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "staff_login_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("client_key", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_staff_login_failures_client_key", "staff_login_failures", ["client_key"])
    op.create_index("ix_staff_login_failures_at", "staff_login_failures", ["at"])


def downgrade() -> None:
    op.drop_index("ix_staff_login_failures_at", table_name="staff_login_failures")
    op.drop_index("ix_staff_login_failures_client_key", table_name="staff_login_failures")
    op.drop_table("staff_login_failures")
