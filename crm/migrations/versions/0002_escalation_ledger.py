"""The durable emergency alert on calls, Twilio's call duration, and the CRM phone ledger.

Revision ID: 0002_escalation
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_escalation"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("emergency_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("emergency_reason", sa.Text(), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("alert_sent_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("alert_claimed_until", sa.DateTime(timezone=True), nullable=True)
        )
        batch.add_column(
            sa.Column("alert_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("alert_error", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("transferred_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("duration_seconds", sa.Integer(), nullable=True))
        batch.create_index("ix_calls_emergency_at", ["emergency_at"], unique=False)
    op.create_table(
        "crm_phone_ledger",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("crm", sa.String(length=32), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("sobject", sa.String(length=64), nullable=False),
        sa.Column("record_id", sa.String(length=18), nullable=False),
        sa.Column("call_sid", sa.String(length=64), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_crm_phone_ledger_phone", "crm_phone_ledger", ["phone"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_crm_phone_ledger_phone", table_name="crm_phone_ledger")
    op.drop_table("crm_phone_ledger")
    with op.batch_alter_table("calls") as batch:
        batch.drop_index("ix_calls_emergency_at")
        for column in (
            "duration_seconds",
            "transferred_at",
            "alert_error",
            "alert_attempts",
            "alert_claimed_until",
            "alert_sent_at",
            "emergency_reason",
            "emergency_at",
        ):
            batch.drop_column(column)
