"""calls.caller_id: Twilio's ``From`` as sent (SIP and client identities of any length),
so ``caller_phone`` only ever holds an E.164 number.

Revision ID: 0010
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # ADD COLUMN with a default: no table rebuild on SQLite, no rewrite on PostgreSQL.
    op.add_column("calls", sa.Column("caller_id", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    # SQLite ≥ 3.35 drops a column in place, like PostgreSQL.
    op.drop_column("calls", "caller_id")
