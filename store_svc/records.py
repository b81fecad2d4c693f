"""The engine's log as database rows: pure functions, no I/O, so the mapping is unit-testable.

Every row comes from the batch's events, never from its command: the command is what was asked,
the events are what the engine did. A CreateAccount the engine refused (two admins racing for one
user id) logs a CommandRefused event and no AccountCreated, so it makes no users row.

Enums are stored by name ('BUY', 'FILLED') so the tables read without the proto at hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exchange.internal.v1 import engine_pb2
from exchange.v1 import types_pb2
from mockex import participant

Row = dict[str, Any]

ORDER_VERSION = ("updated_ns", "log_offset", "event_index")
"""Columns that order an order's states: a row replaces the stored one only when this is greater,
so a replayed older state never overwrites a newer one."""


def order_version(row: Row) -> tuple[int, ...]:
    return tuple(row[name] for name in ORDER_VERSION)


def order_row(state: engine_pb2.OrderState, log_offset: int, event_index: int) -> Row:
    return {
        "order_id": state.order_id,
        "user_id": state.user_id,
        "symbol": state.symbol,
        "side": types_pb2.Side.Name(state.side),
        "type": types_pb2.OrderType.Name(state.type),
        "time_in_force": types_pb2.TimeInForce.Name(state.time_in_force),
        "price_ticks": state.price_ticks,
        "quantity": state.quantity,
        "filled_quantity": state.filled_quantity,
        "filled_notional_ticks": state.filled_notional_ticks,
        "status": types_pb2.OrderStatus.Name(state.status),
        "reason": types_pb2.OrderReason.Name(state.reason),
        "client_order_id": state.client_order_id,
        "created_ns": state.created_ns,
        "updated_ns": state.updated_ns,
        "log_offset": log_offset,
        "event_index": event_index,
    }


def order_state(row: Any) -> engine_pb2.OrderState:
    """Back from a stored orders row (a mapping or a SQLAlchemy Row) to the engine's OrderState."""
    return engine_pb2.OrderState(
        order_id=row.order_id,
        user_id=row.user_id,
        symbol=row.symbol,
        side=row.side,
        type=row.type,
        time_in_force=row.time_in_force,
        price_ticks=row.price_ticks,
        quantity=row.quantity,
        filled_quantity=row.filled_quantity,
        filled_notional_ticks=row.filled_notional_ticks,
        status=row.status,
        reason=row.reason,
        client_order_id=row.client_order_id,
        created_ns=row.created_ns,
        updated_ns=row.updated_ns,
    )


def fill_row(event: engine_pb2.EngineEvent) -> Row:
    filled = event.order_filled
    return {
        "order_id": filled.order.order_id,
        "trade_id": filled.trade_id,
        "price_ticks": filled.price_ticks,
        "quantity": filled.quantity,
        "timestamp_ns": event.timestamp_ns,
        "sequence": event.sequence,
        "fee_units": filled.fee_units,
    }


def news_row(event: engine_pb2.EngineEvent) -> Row:
    """Headline and symbols only: the shock is the simulator's, never a participant's."""
    news = event.news_published
    return {
        "news_id": news.news_id,
        "headline": news.headline,
        "symbols": ",".join(news.symbols),
        "timestamp_ns": event.timestamp_ns,
        "exchange_sequence": event.exchange_sequence,
    }


def trade_row(event: engine_pb2.EngineEvent) -> Row:
    trade = event.trade_executed
    return {
        "trade_id": trade.trade_id,
        "symbol": event.symbol,
        "price_ticks": trade.price_ticks,
        "quantity": trade.quantity,
        "aggressor_side": types_pb2.Side.Name(trade.aggressor_side),
        "buy_order_id": trade.buy_order_id,
        "sell_order_id": trade.sell_order_id,
        "buyer_id": trade.buyer_id,
        "seller_id": trade.seller_id,
        "timestamp_ns": event.timestamp_ns,
        "sequence": event.sequence,
    }


def symbol_row(event: engine_pb2.EngineEvent) -> Row:
    added = event.symbol_added
    return {"symbol": event.symbol, "tick_size": added.tick_size, "lot_size": added.lot_size}


def user_row(event: engine_pb2.EngineEvent) -> Row:
    created = event.account_created
    return {
        "user_id": created.user_id,
        "admin": created.admin,
        "api_key_sha256": created.api_key_sha256,
    }


def snapshot_row(snapshot: engine_pb2.EngineSnapshot, payload: bytes) -> Row:
    """The snapshot is kept whole (its serialized bytes), keyed by the events offset it follows."""
    return {
        "log_offset": snapshot.log_offset,
        "timestamp_ns": snapshot.timestamp_ns,
        "payload": payload,
    }


@dataclass
class Rows:
    """Everything one Kafka poll writes, in one transaction.

    Keyed tables keep one row per key (the newest order state wins), so a multi-row upsert never
    touches the same key twice, which PostgreSQL refuses.
    """

    symbols: dict[str, Row] = field(default_factory=dict)
    users: dict[str, Row] = field(default_factory=dict)
    orders: dict[str, Row] = field(default_factory=dict)
    fills: list[Row] = field(default_factory=list)
    trades: list[Row] = field(default_factory=list)
    snapshots: list[Row] = field(default_factory=list)
    news: list[Row] = field(default_factory=list)
    log_positions: dict[tuple[str, int], int] = field(default_factory=dict)
    """(topic, partition) -> next offset to read, written in the same transaction as the rows."""

    def __len__(self) -> int:
        return sum(
            len(rows)
            for rows in (
                self.symbols,
                self.users,
                self.orders,
                self.fills,
                self.trades,
                self.snapshots,
                self.news,
            )
        )

    def add_batch(self, batch: engine_pb2.EngineBatch, log_offset: int) -> None:
        """Rows of one EngineBatch found at `log_offset` of the events topic, from its events only
        (orders from the five order events, fills, trades, listings, accounts)."""
        for event_index, event in enumerate(batch.events):
            kind = event.WhichOneof("event")
            if kind in participant.ORDER_EVENT_KINDS:
                self._add_order(order_row(getattr(event, kind).order, log_offset, event_index))
            if kind == "order_filled":
                self.fills.append(fill_row(event))
            elif kind == "trade_executed":
                self.trades.append(trade_row(event))
            elif kind == "symbol_added":
                self.symbols[event.symbol] = symbol_row(event)
            elif kind == "account_created":
                self.users[event.account_created.user_id] = user_row(event)
            elif kind == "api_key_changed":
                changed = event.api_key_changed
                self.users[changed.user_id] = {
                    "user_id": changed.user_id,
                    "admin": changed.admin,
                    "api_key_sha256": changed.api_key_sha256,
                }
            elif kind == "news_published":
                self.news.append(news_row(event))

    def add_snapshot(self, snapshot: engine_pb2.EngineSnapshot, payload: bytes) -> None:
        self.snapshots.append(snapshot_row(snapshot, payload))

    def _add_order(self, row: Row) -> None:
        current = self.orders.get(row["order_id"])
        if current is None or order_version(row) > order_version(current):
            self.orders[row["order_id"]] = row
