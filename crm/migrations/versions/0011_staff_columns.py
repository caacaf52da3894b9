"""Staff triage columns on summaries (caller name, need, urgency, emergency, callback), so
the staff list filters, searches and pages in SQL instead of parsing every summary.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _columns() -> tuple[sa.Column[object], ...]:
    return (
        sa.Column("caller_name", sa.String(length=255), nullable=False, server_default=""),
        sa.Column("need", sa.String(length=255), nullable=False, server_default=""),
        sa.Column("urgency", sa.Integer(), nullable=False, server_default="2"),
        sa.Column("is_emergency", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("callback_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("callback_due", sa.Date(), nullable=True),
    )


def upgrade() -> None:
    with op.batch_alter_table("summaries") as batch:
        for column in _columns():
            batch.add_column(column)
        batch.create_index("ix_summaries_urgency", ["urgency"])
    summaries = sa.table(
        "summaries",
        sa.column("call_sid", sa.String),
        sa.column("summary_json", sa.Text),
        *(sa.column(c.name, c.type) for c in _columns()),
    )
    connection = op.get_bind()
    for call_sid, text in connection.execute(
        sa.select(summaries.c.call_sid, summaries.c.summary_json)
    ):
        data = json.loads(text)
        name = " ".join(p for p in (data.get("first_name"), data.get("last_name")) if p)
        due = data.get("callback_due")
        connection.execute(
            summaries.update()
            .where(summaries.c.call_sid == call_sid)
            .values(
                caller_name=name[:255],
                need=(data.get("need") or "")[:255],
                urgency=int(data.get("urgency") or 2),
                is_emergency=bool(data.get("is_emergency")),
                callback_requested=bool(data.get("callback_requested")),
                callback_due=dt.date.fromisoformat(due) if due else None,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("summaries") as batch:
        batch.drop_index("ix_summaries_urgency")
        for column in _columns():
            batch.drop_column(column.name)
