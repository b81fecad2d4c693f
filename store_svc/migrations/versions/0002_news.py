"""News (every NewsPublished event's headline and symbols, never its shock) and fees of fills.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "news",
        sa.Column("news_id", sa.Text, primary_key=True),
        sa.Column("headline", sa.Text, nullable=False),
        # Comma-separated symbols ("" for market-wide news).
        sa.Column("symbols", sa.Text, nullable=False),
        sa.Column("timestamp_ns", sa.BigInteger, nullable=False),
        sa.Column("exchange_sequence", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_news_timestamp", "news", ["timestamp_ns"])
    with op.batch_alter_table("fills") as fills:
        fills.add_column(sa.Column("fee_units", sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("fills") as fills:
        fills.drop_column("fee_units")
    op.drop_index("ix_news_timestamp", table_name="news")
    op.drop_table("news")
