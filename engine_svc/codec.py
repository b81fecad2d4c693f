"""Domain objects to and from the proto messages that cross Redis and Kafka.

Events become EngineEvent; the whole engine becomes an EngineSnapshot and back. This is the only
place that knows both the domain classes and the wire format.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine_svc import events as ev
from engine_svc.accounts import CASH_UNITS_PER_CURRENCY, Account, Position
from engine_svc.engine import MatchingEngine, SymbolState
from engine_svc.orders import (
    Order,
    OrderStatus,
    OrderTerms,
    OrderType,
    Reason,
    Side,
    TimeInForce,
)
from engine_svc.rules import ExchangeSettings
from exchange.internal.v1 import engine_pb2

SNAPSHOT_FORMAT = 1
"""1: integer P&L, settings, clientOrderIds and sessions. Format 0 snapshots are converted."""


def order_state(
    terms: OrderTerms,
    status: int,
    reason: int,
    filled_quantity: int,
    filled_notional: int,
    updated_ns: int,
) -> engine_pb2.OrderState:
    return engine_pb2.OrderState(
        order_id=terms.order_id,
        user_id=terms.user_id,
        symbol=terms.symbol,
        side=terms.side,
        type=terms.type,
        time_in_force=terms.time_in_force,
        price_ticks=terms.price,
        quantity=terms.quantity,
        filled_quantity=filled_quantity,
        filled_notional_ticks=filled_notional,
        status=status,
        reason=reason,
        client_order_id=terms.client_order_id,
        created_ns=terms.created_at,
        updated_ns=updated_ns,
    )


def live_order_state(order: Order) -> engine_pb2.OrderState:
    """The state of an open order now (for snapshots)."""
    return order_state(
        order.terms,
        order.status,
        order.reason,
        order.filled_quantity,
        order.filled_notional,
        order.updated_at,
    )


def settings_to_proto(settings: ExchangeSettings) -> engine_pb2.ExchangeSettings:
    return engine_pb2.ExchangeSettings(
        rules_version=settings.rules_version,
        short_limit=settings.short_limit,
        max_open_orders=settings.max_open_orders,
    )


def settings_from_proto(message: engine_pb2.ExchangeSettings) -> ExchangeSettings:
    return ExchangeSettings(
        rules_version=message.rules_version,
        short_limit=message.short_limit,
        max_open_orders=message.max_open_orders,
    )


def grants_from_proto(grants: Iterable[engine_pb2.PositionGrant]) -> tuple[ev.Grant, ...]:
    return tuple(ev.Grant(grant.symbol, grant.quantity, grant.price_ticks) for grant in grants)


def event_to_proto(event: ev.Event) -> engine_pb2.EngineEvent:
    message = engine_pb2.EngineEvent(
        symbol=event.symbol, sequence=event.sequence, timestamp_ns=event.timestamp
    )
    _FILLERS[type(event)](event, message)
    return message


def _accepted(event: ev.OrderAccepted, message: engine_pb2.EngineEvent) -> None:
    message.order_accepted.order.CopyFrom(
        order_state(event.order, OrderStatus.NEW, Reason.NONE, 0, 0, event.timestamp)
    )


def _rejected(event: ev.OrderRejected, message: engine_pb2.EngineEvent) -> None:
    message.order_rejected.order.CopyFrom(
        order_state(event.order, OrderStatus.REJECTED, event.reason, 0, 0, event.timestamp)
    )


def _filled(event: ev.OrderFilled, message: engine_pb2.EngineEvent) -> None:
    filled = message.order_filled
    filled.order.CopyFrom(
        order_state(
            event.order,
            event.status,
            Reason.NONE,
            event.filled_quantity,
            event.filled_notional,
            event.timestamp,
        )
    )
    filled.trade_id = event.trade_id
    filled.price_ticks = event.price
    filled.quantity = event.quantity


def _cancelled(event: ev.OrderCancelled, message: engine_pb2.EngineEvent) -> None:
    message.order_cancelled.order.CopyFrom(
        order_state(
            event.order,
            OrderStatus.CANCELLED,
            event.reason,
            event.filled_quantity,
            event.filled_notional,
            event.timestamp,
        )
    )


def _expired(event: ev.OrderExpired, message: engine_pb2.EngineEvent) -> None:
    message.order_expired.order.CopyFrom(
        order_state(
            event.order,
            OrderStatus.EXPIRED,
            event.reason,
            event.filled_quantity,
            event.filled_notional,
            event.timestamp,
        )
    )


def _cancel_rejected(event: ev.CancelRejected, message: engine_pb2.EngineEvent) -> None:
    rejected = message.cancel_rejected
    rejected.order_id = event.order_id
    rejected.user_id = event.user_id
    rejected.reason = event.reason


def _trade(event: ev.TradeExecuted, message: engine_pb2.EngineEvent) -> None:
    trade = message.trade_executed
    trade.trade_id = event.trade_id
    trade.price_ticks = event.price
    trade.quantity = event.quantity
    trade.aggressor_side = event.aggressor_side
    trade.buy_order_id = event.buy_order_id
    trade.sell_order_id = event.sell_order_id
    trade.buyer_id = event.buyer_id
    trade.seller_id = event.seller_id


def _book_level(event: ev.BookLevelChanged, message: engine_pb2.EngineEvent) -> None:
    level = message.book_level_changed
    level.side = event.side
    level.price_ticks = event.price
    level.quantity = event.quantity
    level.order_count = event.order_count


def _quote(event: ev.QuoteChanged, message: engine_pb2.EngineEvent) -> None:
    quote = message.quote_changed
    quote.bid_ticks = event.bid
    quote.bid_size = event.bid_size
    quote.ask_ticks = event.ask
    quote.ask_size = event.ask_size
    quote.last_ticks = event.last
    quote.last_quantity = event.last_quantity
    quote.volume = event.volume
    quote.open_ticks = event.open
    quote.high_ticks = event.high
    quote.low_ticks = event.low


def _market_state(event: ev.MarketStateChanged, message: engine_pb2.EngineEvent) -> None:
    message.market_state_changed.status = event.status


def _symbol_added(event: ev.SymbolAdded, message: engine_pb2.EngineEvent) -> None:
    message.exchange_sequence = event.exchange_sequence
    added = message.symbol_added
    added.tick_size = event.tick_size
    added.lot_size = event.lot_size
    added.reference_price_ticks = event.reference_price


def _day_opened(event: ev.TradingDayOpened, message: engine_pb2.EngineEvent) -> None:
    message.exchange_sequence = event.exchange_sequence
    message.trading_day_opened.SetInParent()


def _day_closed(event: ev.TradingDayClosed, message: engine_pb2.EngineEvent) -> None:
    message.exchange_sequence = event.exchange_sequence
    message.trading_day_closed.SetInParent()


def _halted(event: ev.TradingHalted, message: engine_pb2.EngineEvent) -> None:
    message.exchange_sequence = event.exchange_sequence
    message.trading_halted.symbol = event.symbol


def _resumed(event: ev.TradingResumed, message: engine_pb2.EngineEvent) -> None:
    message.exchange_sequence = event.exchange_sequence
    message.trading_resumed.symbol = event.symbol


def _account_created(event: ev.AccountCreated, message: engine_pb2.EngineEvent) -> None:
    message.exchange_sequence = event.exchange_sequence
    created = message.account_created
    created.user_id = event.user_id
    created.admin = event.admin
    created.api_key_sha256 = event.api_key_sha256
    created.cash_units = event.cash
    for grant in event.grants:
        created.grants.add(symbol=grant.symbol, quantity=grant.quantity, price_ticks=grant.price)
    created.starting_value_units = event.starting_value


def _settings_changed(event: ev.SettingsChanged, message: engine_pb2.EngineEvent) -> None:
    message.exchange_sequence = event.exchange_sequence
    changed = message.settings_changed
    changed.settings.CopyFrom(settings_to_proto(event.settings))
    changed.previous.CopyFrom(settings_to_proto(event.previous))


def _cash_adjusted(event: ev.CashAdjusted, message: engine_pb2.EngineEvent) -> None:
    adjusted = message.cash_adjusted
    adjusted.user_id = event.user_id
    adjusted.amount_units = event.amount
    adjusted.cash_units = event.cash
    adjusted.starting_value_units = event.starting_value


def _command_refused(event: ev.CommandRefused, message: engine_pb2.EngineEvent) -> None:
    refused = message.command_refused
    refused.reason = event.reason
    refused.message = event.message
    refused.user_id = event.user_id
    refused.order_id = event.order_id


_FILLERS = {
    ev.OrderAccepted: _accepted,
    ev.OrderRejected: _rejected,
    ev.OrderFilled: _filled,
    ev.OrderCancelled: _cancelled,
    ev.OrderExpired: _expired,
    ev.CancelRejected: _cancel_rejected,
    ev.TradeExecuted: _trade,
    ev.BookLevelChanged: _book_level,
    ev.QuoteChanged: _quote,
    ev.MarketStateChanged: _market_state,
    ev.SymbolAdded: _symbol_added,
    ev.TradingDayOpened: _day_opened,
    ev.TradingDayClosed: _day_closed,
    ev.TradingHalted: _halted,
    ev.TradingResumed: _resumed,
    ev.AccountCreated: _account_created,
    ev.SettingsChanged: _settings_changed,
    ev.CashAdjusted: _cash_adjusted,
    ev.CommandRefused: _command_refused,
}


# ---- snapshots ------------------------------------------------------------------------------


def snapshot_engine(engine: MatchingEngine) -> engine_pb2.EngineSnapshot:
    """The engine's whole domain state; the caller adds what lives around it (log offset,
    sessions, the open orders' fills, the symbols' update times)."""
    snapshot = engine_pb2.EngineSnapshot(
        format_version=SNAPSHOT_FORMAT,
        market_open=engine.market_open,
        exchange_sequence=engine.exchange_sequence,
    )
    snapshot.settings.CopyFrom(settings_to_proto(engine.settings))
    for state in engine.symbols.values():
        snapshot.symbols.add(
            symbol=state.symbol,
            tick_size=state.tick_size,
            lot_size=state.lot_size,
            reference_price_ticks=state.reference_price,
            sequence=state.sequence,
            halted=state.halted,
            trade_count=state.trade_count,
            last_ticks=state.last,
            last_quantity=state.last_quantity,
            volume=state.volume,
            open_ticks=state.open,
            high_ticks=state.high,
            low_ticks=state.low,
        )
        for book_side in (state.book.bids, state.book.asks):
            for order in book_side.iter_orders():
                resting = snapshot.open_orders.add(reserved_cash_units=order.reserved_cash)
                resting.order.CopyFrom(live_order_state(order))
    for account in engine.accounts.values():
        account_snapshot = snapshot.accounts.add(
            user_id=account.user_id,
            cash_units=account.cash,
            reserved_cash_units=account.reserved_cash,
            starting_value_units=account.starting_value,
            admin=account.admin,
            api_key_sha256=account.api_key_sha256,
        )
        for symbol, position in account.positions.items():
            account_snapshot.positions.add(
                symbol=symbol,
                quantity=position.quantity,
                reserved=position.reserved,
                cost_units=position.cost,
                realized_pnl_units=position.realized_pnl,
            )
    for (user_id, client_order_id), order_id in engine.client_orders.items():
        snapshot.client_orders.add(
            user_id=user_id, client_order_id=client_order_id, order_id=order_id
        )
    return snapshot


def restore_engine(snapshot: engine_pb2.EngineSnapshot) -> MatchingEngine:
    """An engine in exactly the state the snapshot was taken in (format 0 converted)."""
    old_format = snapshot.format_version == 0
    if old_format:
        settings = ExchangeSettings(
            short_limit=snapshot.short_limit, max_open_orders=snapshot.max_open_orders
        )
    else:
        settings = settings_from_proto(snapshot.settings)
    engine = MatchingEngine(settings, market_open=snapshot.market_open)
    engine.exchange_sequence = snapshot.exchange_sequence
    for symbol_snapshot in snapshot.symbols:
        state = SymbolState(
            symbol_snapshot.symbol,
            symbol_snapshot.tick_size,
            symbol_snapshot.lot_size,
            symbol_snapshot.reference_price_ticks,
        )
        state.sequence = symbol_snapshot.sequence
        state.halted = symbol_snapshot.halted
        state.trade_count = symbol_snapshot.trade_count
        state.last = symbol_snapshot.last_ticks
        state.last_quantity = symbol_snapshot.last_quantity
        state.volume = symbol_snapshot.volume
        state.open = symbol_snapshot.open_ticks
        state.high = symbol_snapshot.high_ticks
        state.low = symbol_snapshot.low_ticks
        engine.symbols[state.symbol] = state
    keys = {user.user_id: user for user in snapshot.users}
    for account_snapshot in snapshot.accounts:
        user_id = account_snapshot.user_id
        account = Account(
            user_id,
            account_snapshot.cash_units,
            starting_value=account_snapshot.starting_value_units,
            admin=account_snapshot.admin,
            api_key_sha256=account_snapshot.api_key_sha256,
        )
        if old_format and user_id in keys:
            account.admin = keys[user_id].admin
            account.api_key_sha256 = keys[user_id].api_key_sha256
        account.reserved_cash = account_snapshot.reserved_cash_units
        for position_snapshot in account_snapshot.positions:
            if old_format:
                position = _old_format_position(position_snapshot)
            else:
                position = Position(position_snapshot.quantity, position_snapshot.cost_units)
                position.realized_pnl = position_snapshot.realized_pnl_units
            position.reserved = position_snapshot.reserved
            account.positions[position_snapshot.symbol] = position
        if old_format:
            # Format 0 kept no starting value: the one under which P&L is what the account has
            # realized plus what its positions are worth above their cost.
            account.starting_value = (
                account.cash
                + sum(position.cost for position in account.positions.values())
                - account.realized_pnl
            )
        engine.accounts[user_id] = account
    for resting in snapshot.open_orders:
        order = _order_from_state(resting.order)
        order.reserved_cash = resting.reserved_cash_units
        engine.symbols[order.symbol].book.side(order.side).add(order)
        engine.open_orders[order.order_id] = order
        if order.user_id:
            engine.open_order_counts[order.user_id] = (
                engine.open_order_counts.get(order.user_id, 0) + 1
            )
    for entry in snapshot.client_orders:
        engine.client_orders[(entry.user_id, entry.client_order_id)] = entry.order_id
    for state in engine.symbols.values():
        engine.refresh_last_quote(state)
    return engine


def _old_format_position(snapshot: engine_pb2.PositionSnapshot) -> Position:
    """Format 0 kept the average price and realized P&L as currency floats."""
    cost = round(snapshot.avg_price * snapshot.quantity * CASH_UNITS_PER_CURRENCY)
    position = Position(snapshot.quantity, cost)
    position.realized_pnl = round(snapshot.realized_pnl * CASH_UNITS_PER_CURRENCY)
    return position


def _order_from_state(state: engine_pb2.OrderState) -> Order:
    terms = OrderTerms(
        state.order_id,
        state.user_id,
        state.symbol,
        Side(state.side),
        OrderType(state.type),
        TimeInForce(state.time_in_force),
        state.price_ticks,
        state.quantity,
        state.client_order_id,
        state.created_ns,
    )
    order = Order(terms)
    order.filled_quantity = state.filled_quantity
    order.remaining = state.quantity - state.filled_quantity
    order.filled_notional = state.filled_notional_ticks
    order.status = OrderStatus(state.status)
    order.reason = Reason(state.reason)
    order.updated_at = state.updated_ns
    return order
