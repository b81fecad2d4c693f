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
from mockex import participant, ranking

Row = dict[str, Any]

REPORTED_ORDER_EVENTS = frozenset(("order_accepted", "order_rejected", "order_filled"))
"""Order events a report counts: an order placed (accepted or rejected) and each fill."""

PARTICIPANT_ROLE = engine_pb2.AccountRole.Name(engine_pb2.ACCOUNT_ROLE_PARTICIPANT_UNSPECIFIED)

# Kinds of round_marks and report_activity rows.
ROUND_MARK_LOADED = "LOADED"
ROUND_MARK_STARTED = "STARTED"
ROUND_MARK_ENDED = "ENDED"
ACTIVITY_ACCEPTED = "ACCEPTED"
ACTIVITY_REJECTED = "REJECTED"
ACTIVITY_FILL = "FILL"
ACTIVITY_CONVERSION = "CONVERSION"

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


def account_row(event: engine_pb2.EngineEvent) -> Row:
    created = event.account_created
    return {
        "user_id": created.user_id,
        "role": engine_pb2.AccountRole.Name(created.role),
        "admin": created.admin,
        "created_ns": event.timestamp_ns,
    }


def is_participant(created: engine_pb2.AccountCreated) -> bool:
    """Reported and ranked: neither a bot nor an admin."""
    return created.role == engine_pb2.ACCOUNT_ROLE_PARTICIPANT_UNSPECIFIED and not created.admin


def activity_row(event: engine_pb2.EngineEvent, log_offset: int, event_index: int) -> Row:
    """An order placed (accepted or rejected, with its reason) or one of its fills."""
    kind = event.WhichOneof("event")
    order = getattr(event, kind).order
    row = {
        "activity_id": f"{ACTIVITY_ACCEPTED}:{order.order_id}",
        "log_offset": log_offset,
        "event_index": event_index,
        "user_id": order.user_id,
        "symbol": order.symbol,
        "kind": ACTIVITY_ACCEPTED,
        "reason": "",
        "quantity": order.quantity,
        "notional_ticks": 0,
        "fee_units": 0,
    }
    if kind == "order_rejected":
        row["kind"] = ACTIVITY_REJECTED
        row["activity_id"] = f"{ACTIVITY_REJECTED}:{order.order_id}"
        row["reason"] = types_pb2.OrderReason.Name(order.reason)
    elif kind == "order_filled":
        filled = event.order_filled
        row["kind"] = ACTIVITY_FILL
        row["activity_id"] = f"{ACTIVITY_FILL}:{order.order_id}:{filled.trade_id}"
        row["quantity"] = filled.quantity
        row["notional_ticks"] = filled.price_ticks * filled.quantity
        row["fee_units"] = filled.fee_units
    return row


def conversion_row(event: engine_pb2.EngineEvent, log_offset: int, event_index: int) -> Row:
    """ETF units created or redeemed: the engine's equity already holds the cash and positions
    it moved, so a report needs only its fee (and counts it)."""
    executed = event.conversion_executed
    return {
        "activity_id": f"{ACTIVITY_CONVERSION}:{executed.conversion_id}",
        "log_offset": log_offset,
        "event_index": event_index,
        "user_id": executed.user_id,
        "symbol": event.symbol,
        "kind": ACTIVITY_CONVERSION,
        "reason": "",
        "quantity": executed.quantity,
        "notional_ticks": 0,
        "fee_units": executed.fee_units,
    }


def round_mark_row(event: engine_pb2.EngineEvent, log_offset: int, event_index: int) -> Row:
    """A round started or ended, or a scenario loaded (a new event: rounds from 1 again)."""
    kind = event.WhichOneof("event")
    row = {
        "exchange_sequence": event.exchange_sequence,
        "log_offset": log_offset,
        "event_index": event_index,
        "kind": ROUND_MARK_LOADED,
        "round": 0,
        "scenario": "",
        "timestamp_ns": event.timestamp_ns,
    }
    if kind == "round_started":
        row["kind"], row["round"] = ROUND_MARK_STARTED, event.round_started.round
    elif kind == "round_ended":
        row["kind"], row["round"] = ROUND_MARK_ENDED, event.round_ended.round
    else:
        row["scenario"] = event.scenario_changed.name
    return row


def ranking_row(event: engine_pb2.EngineEvent, log_offset: int, event_index: int) -> Row:
    """The ranking in force from a SettingsChanged on (the reports rank by the last one)."""
    return {
        "exchange_sequence": event.exchange_sequence,
        "log_offset": log_offset,
        "event_index": event_index,
        "ranking": ranking.metric_name(event.settings_changed.settings.ranking),
    }


def score_rows(event: engine_pb2.EngineEvent, log_offset: int, event_index: int) -> list[Row]:
    return [
        {
            "exchange_sequence": event.exchange_sequence,
            "log_offset": log_offset,
            "event_index": event_index,
            "user_id": score.user_id,
            "timestamp_ns": event.timestamp_ns,
            "equity_units": score.equity_units,
            "pnl_units": score.pnl_units,
            "max_drawdown_units": score.max_drawdown_units,
            "sharpe": score.sharpe,
            "round_pnl_units": ",".join(str(pnl) for pnl in score.round_pnl_units),
        }
        for score in event.scores_sampled.scores
    ]


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
    accounts: list[Row] = field(default_factory=list)
    activity: list[Row] = field(default_factory=list)
    round_marks: list[Row] = field(default_factory=list)
    score_samples: list[Row] = field(default_factory=list)
    rankings: list[Row] = field(default_factory=list)
    participants: set[str] = field(default_factory=set)
    """Who reports are kept for, across polls: the consumer passes its own set (read from the
    accounts table at start), which each AccountCreated of a participant adds to."""
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
                self.accounts,
                self.activity,
                self.round_marks,
                self.score_samples,
                self.rankings,
            )
        )

    def add_batch(self, batch: engine_pb2.EngineBatch, log_offset: int) -> None:
        """Rows of one EngineBatch found at `log_offset` of the events topic, from its events only
        (orders from the six order events, fills, trades, listings, accounts, and the facts of
        the reports: participants' orders, fills and conversions, rounds, scores, rankings)."""
        for event_index, event in enumerate(batch.events):
            kind = event.WhichOneof("event")
            if kind in participant.ORDER_EVENT_KINDS:
                order = getattr(event, kind).order
                self._add_order(order_row(order, log_offset, event_index))
                if kind in REPORTED_ORDER_EVENTS and order.user_id in self.participants:
                    self.activity.append(activity_row(event, log_offset, event_index))
            if kind == "order_filled":
                self.fills.append(fill_row(event))
            elif kind == "trade_executed":
                self.trades.append(trade_row(event))
            elif kind == "symbol_added":
                self.symbols[event.symbol] = symbol_row(event)
            elif kind == "account_created":
                self.users[event.account_created.user_id] = user_row(event)
                self.accounts.append(account_row(event))
                if is_participant(event.account_created):
                    self.participants.add(event.account_created.user_id)
            elif kind == "api_key_changed":
                changed = event.api_key_changed
                self.users[changed.user_id] = {
                    "user_id": changed.user_id,
                    "admin": changed.admin,
                    "api_key_sha256": changed.api_key_sha256,
                }
            elif kind == "news_published":
                self.news.append(news_row(event))
            elif kind in ("round_started", "round_ended") or (
                kind == "scenario_changed"
                and event.scenario_changed.state == engine_pb2.SCENARIO_STATE_LOADED
            ):
                self.round_marks.append(round_mark_row(event, log_offset, event_index))
            elif kind == "scores_sampled":
                self.score_samples.extend(score_rows(event, log_offset, event_index))
            elif kind == "settings_changed":
                self.rankings.append(ranking_row(event, log_offset, event_index))
            elif (
                kind == "conversion_executed"
                and event.conversion_executed.user_id in self.participants
            ):
                self.activity.append(conversion_row(event, log_offset, event_index))

    def add_snapshot(self, snapshot: engine_pb2.EngineSnapshot, payload: bytes) -> None:
        self.snapshots.append(snapshot_row(snapshot, payload))

    def _add_order(self, row: Row) -> None:
        current = self.orders.get(row["order_id"])
        if current is None or order_version(row) > order_version(current):
            self.orders[row["order_id"]] = row
