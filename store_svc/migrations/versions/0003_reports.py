"""Facts of the end-of-round reports: accounts with their role, participants' orders, fills,
rejections and ETF conversions, round marks, score samples and the rules' rankings, each at its
first place in the log and keyed by what it is (an order's id, an event's exchange-wide
sequence), so a batch the log holds twice counts once.

The store then reads the log again from its start (the rows of every other table are written
idempotently), so a database that existed before this migration has its reports too. On a long
log that takes a while; answers wait for it (or are UNAVAILABLE) as after any restart.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("admin", sa.Boolean, nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "report_activity",
        sa.Column("activity_id", sa.Text, primary_key=True),
        sa.Column("log_offset", sa.BigInteger, nullable=False),
        sa.Column("event_index", sa.BigInteger, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("notional_ticks", sa.BigInteger, nullable=False),
        sa.Column("fee_units", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_report_activity_user", "report_activity", ["user_id", "log_offset"])
    op.create_table(
        "round_marks",
        sa.Column("exchange_sequence", sa.BigInteger, primary_key=True),
        sa.Column("log_offset", sa.BigInteger, nullable=False),
        sa.Column("event_index", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("round", sa.BigInteger, nullable=False),
        sa.Column("scenario", sa.Text, nullable=False),
        sa.Column("timestamp_ns", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "score_samples",
        sa.Column("exchange_sequence", sa.BigInteger, primary_key=True),
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("log_offset", sa.BigInteger, nullable=False),
        sa.Column("event_index", sa.BigInteger, nullable=False),
        sa.Column("timestamp_ns", sa.BigInteger, nullable=False),
        sa.Column("equity_units", sa.BigInteger, nullable=False),
        sa.Column("pnl_units", sa.BigInteger, nullable=False),
        sa.Column("max_drawdown_units", sa.BigInteger, nullable=False),
        sa.Column("sharpe", sa.Float, nullable=False),
        sa.Column("round_pnl_units", sa.Text, nullable=False),
    )
    op.create_table(
        "rankings",
        sa.Column("exchange_sequence", sa.BigInteger, primary_key=True),
        sa.Column("log_offset", sa.BigInteger, nullable=False),
        sa.Column("event_index", sa.BigInteger, nullable=False),
        sa.Column("ranking", sa.Text, nullable=False),
    )
    op.execute("DELETE FROM log_positions")


def downgrade() -> None:
    op.drop_table("rankings")
    op.drop_table("score_samples")
    op.drop_table("round_marks")
    op.drop_index("ix_report_activity_user", table_name="report_activity")
    op.drop_table("report_activity")
    op.drop_table("accounts")
