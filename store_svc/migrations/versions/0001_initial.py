"""Initial schema: symbols, users, orders, fills, trades, snapshots.

Revision ID: 0001
Revises:
Create Date: 2026-05-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "symbols",
        sa.Column("symbol", sa.Text, primary_key=True),
        sa.Column("tick_size", sa.Text, nullable=False),
        sa.Column("lot_size", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("admin", sa.Boolean, nullable=False),
        sa.Column("api_key_sha256", sa.Text, nullable=False),
    )
    op.create_table(
        "orders",
        sa.Column("order_id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("side", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("time_in_force", sa.Text, nullable=False),
        sa.Column("price_ticks", sa.BigInteger, nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("filled_quantity", sa.BigInteger, nullable=False),
        sa.Column("filled_notional_ticks", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("client_order_id", sa.Text, nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("updated_ns", sa.BigInteger, nullable=False),
        sa.Column("log_offset", sa.BigInteger, nullable=False),
        sa.Column("event_index", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_orders_user_created", "orders", ["user_id", "created_ns"])
    op.create_table(
        "fills",
        sa.Column("order_id", sa.Text, primary_key=True),
        sa.Column("trade_id", sa.Text, primary_key=True),
        sa.Column("price_ticks", sa.BigInteger, nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("timestamp_ns", sa.BigInteger, nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "trades",
        sa.Column("trade_id", sa.Text, primary_key=True),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("price_ticks", sa.BigInteger, nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("aggressor_side", sa.Text, nullable=False),
        sa.Column("buy_order_id", sa.Text, nullable=False),
        sa.Column("sell_order_id", sa.Text, nullable=False),
        sa.Column("buyer_id", sa.Text, nullable=False),
        sa.Column("seller_id", sa.Text, nullable=False),
        sa.Column("timestamp_ns", sa.BigInteger, nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_trades_symbol_time", "trades", ["symbol", "timestamp_ns", "sequence"])
    op.create_table(
        "snapshots",
        sa.Column("log_offset", sa.BigInteger, primary_key=True),
        sa.Column("timestamp_ns", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "log_positions",
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("log_positions", "snapshots", "trades", "fills", "orders", "users", "symbols"):
        op.drop_table(table)
