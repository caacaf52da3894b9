"""Initial schema: calls, summaries, the outbox, and the local CRM's records and deliveries.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("call_sid", sa.String(length=64), nullable=False),
        sa.Column("business", sa.String(length=255), nullable=False),
        sa.Column("business_number", sa.String(length=32), nullable=False),
        sa.Column("caller_phone", sa.String(length=32), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("transcript", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("intake_json", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("call_sid"),
    )
    op.create_index("ix_calls_state", "calls", ["state"], unique=False)

    op.create_table(
        "summaries",
        sa.Column("call_sid", sa.String(length=64), nullable=False),
        sa.Column("summary_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["call_sid"], ["calls.call_sid"]),
        sa.PrimaryKeyConstraint("call_sid"),
    )

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_sid", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("crm", sa.String(length=32), nullable=False),
        sa.Column("result_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["call_sid"], ["calls.call_sid"]),
        sa.PrimaryKeyConstraint("id"),
    )
    # One job per call: the unique index is what keeps a finalization single.
    op.create_index("ix_outbox_call_sid", "outbox", ["call_sid"], unique=True)
    op.create_index("ix_outbox_next_attempt_at", "outbox", ["next_attempt_at"], unique=False)
    op.create_index("ix_outbox_state", "outbox", ["state"], unique=False)

    op.create_table(
        "local_crm_records",
        sa.Column("id", sa.String(length=18), nullable=False),
        sa.Column("sobject", sa.String(length=64), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_local_crm_records_sobject", "local_crm_records", ["sobject"], unique=False)

    op.create_table(
        "local_crm_deliveries",
        sa.Column("call_sid", sa.String(length=64), nullable=False),
        sa.Column("result_json", sa.Text(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("call_sid"),
    )


def downgrade() -> None:
    op.drop_table("local_crm_deliveries")
    op.drop_index("ix_local_crm_records_sobject", table_name="local_crm_records")
    op.drop_table("local_crm_records")
    op.drop_index("ix_outbox_state", table_name="outbox")
    op.drop_index("ix_outbox_next_attempt_at", table_name="outbox")
    op.drop_index("ix_outbox_call_sid", table_name="outbox")
    op.drop_table("outbox")
    op.drop_table("summaries")
    op.drop_index("ix_calls_state", table_name="calls")
    op.drop_table("calls")
