"""calls.caller_id: Twilio's ``From`` as sent (SIP and client identities of any length),
so ``caller_phone`` only ever holds an E.164 number; calls.stream_started_at: the one
Media Stream a call may have; outbound_sends: the texts and calls
placed on callers' behalf, for rate limits shared by every process.

Revision ID: 0010
Revises: 0002_escalation
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0002_escalation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # ADD COLUMN with a default: no table rebuild on SQLite, no rewrite on PostgreSQL.
    op.add_column("calls", sa.Column("caller_id", sa.Text(), nullable=False, server_default=""))
    op.add_column(
        "calls", sa.Column("stream_started_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_table(
        "outbound_sends",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("business", sa.String(length=255), nullable=False),
        sa.Column("destination_key", sa.String(length=64), nullable=False),
        sa.Column("call_sid", sa.String(length=64), nullable=True),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("call_sid", "purpose", name="uq_outbound_sends_call"),
    )
    op.create_index("ix_outbound_sends_sent_at", "outbound_sends", ["sent_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_outbound_sends_sent_at", table_name="outbound_sends")
    op.drop_table("outbound_sends")
    # SQLite ≥ 3.35 drops a column in place, like PostgreSQL.
    op.drop_column("calls", "stream_started_at")
    op.drop_column("calls", "caller_id")
