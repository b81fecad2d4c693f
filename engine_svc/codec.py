"""Domain objects to and from the proto messages that cross Redis and Kafka.

Events become EngineEvent; the whole engine becomes an EngineSnapshot and back. This is the only
place that knows both the domain classes and the wire format.
"""

from __future__ import annotations

from engine_svc import events as ev
from engine_svc.accounts import Account, Position
from engine_svc.engine import MatchingEngine, SymbolState
from engine_svc.orders import Order, OrderStatus, OrderType, Reason, Side, TimeInForce
from exchange.internal.v1 import engine_pb2


def order_state(
    order: Order,
    status: int | None = None,
    filled_quantity: int | None = None,
    filled_notional: int | None = None,
    updated_at: int | None = None,
) -> engine_pb2.OrderState:
    """OrderState of `order`; the optional arguments override its live state (as of an event)."""
    return engine_pb2.OrderState(
        order_id=order.order_id,
        user_id=order.user_id,
        symbol=order.symbol,
        side=order.side,
        type=order.type,
        time_in_force=order.time_in_force,
        price_ticks=order.price,
        quantity=order.quantity,
        filled_quantity=order.filled_quantity if filled_quantity is None else filled_quantity,
        filled_notional_ticks=order.filled_notional if filled_notional is None else filled_notional,
        status=order.status if status is None else status,
        reason=order.reason,
        client_order_id=order.client_order_id,
        created_ns=order.created_at,
        updated_ns=order.updated_at if updated_at is None else updated_at,
    )


def event_to_proto(event: ev.Event) -> engine_pb2.EngineEvent:
    message = engine_pb2.EngineEvent(
        symbol=event.symbol, sequence=event.sequence, timestamp_ns=event.timestamp
    )
    _FILLERS[type(event)](event, message)
    return message


def _accepted(event: ev.OrderAccepted, message: engine_pb2.EngineEvent) -> None:
    message.order_accepted.order.CopyFrom(
        order_state(event.order, OrderStatus.NEW, 0, 0, event.timestamp)
    )


def _rejected(event: ev.OrderRejected, message: engine_pb2.EngineEvent) -> None:
    message.order_rejected.order.CopyFrom(order_state(event.order))


def _filled(event: ev.OrderFilled, message: engine_pb2.EngineEvent) -> None:
    filled = message.order_filled
    filled.order.CopyFrom(
        order_state(
            event.order,
            event.status,
            event.filled_quantity,
            event.filled_notional,
            event.timestamp,
        )
    )
    filled.trade_id = event.trade_id
    filled.price_ticks = event.price
    filled.quantity = event.quantity


def _cancelled(event: ev.OrderCancelled, message: engine_pb2.EngineEvent) -> None:
    message.order_cancelled.order.CopyFrom(order_state(event.order))


def _expired(event: ev.OrderExpired, message: engine_pb2.EngineEvent) -> None:
    message.order_expired.order.CopyFrom(order_state(event.order))


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
    message.symbol_added.tick_size = event.tick_size
    message.symbol_added.lot_size = event.lot_size


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
}


# ---- snapshots ------------------------------------------------------------------------------


def snapshot_engine(engine: MatchingEngine) -> engine_pb2.EngineSnapshot:
    """The engine's whole state; the caller fills in log_offset, last_stream_id and users."""
    snapshot = engine_pb2.EngineSnapshot(
        market_open=engine.market_open,
        short_limit=engine.short_limit,
        max_open_orders=engine.max_open_orders,
    )
    for state in engine.symbols.values():
        snapshot.symbols.add(
            symbol=state.symbol,
            tick_size=state.tick_size,
            lot_size=state.lot_size,
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
            for level in book_side.iter_levels():
                for order in level.orders.values():
                    resting = snapshot.open_orders.add(reserved_cash_units=order.reserved_cash)
                    resting.order.CopyFrom(order_state(order))
    for account in engine.accounts.values():
        account_snapshot = snapshot.accounts.add(
            user_id=account.user_id,
            cash_units=account.cash,
            reserved_cash_units=account.reserved_cash,
        )
        for symbol, position in account.positions.items():
            account_snapshot.positions.add(
                symbol=symbol,
                quantity=position.quantity,
                reserved=position.reserved,
                avg_price=position.avg_price,
                realized_pnl=position.realized_pnl,
            )
    return snapshot


def restore_engine(snapshot: engine_pb2.EngineSnapshot) -> MatchingEngine:
    """An engine in exactly the state the snapshot was taken in."""
    engine = MatchingEngine(
        market_open=snapshot.market_open,
        short_limit=snapshot.short_limit,
        max_open_orders=snapshot.max_open_orders,
    )
    for symbol_snapshot in snapshot.symbols:
        state = SymbolState(
            symbol_snapshot.symbol, symbol_snapshot.tick_size, symbol_snapshot.lot_size
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
    for account_snapshot in snapshot.accounts:
        account = Account(account_snapshot.user_id, account_snapshot.cash_units)
        account.reserved_cash = account_snapshot.reserved_cash_units
        for position_snapshot in account_snapshot.positions:
            position = Position(position_snapshot.quantity, position_snapshot.avg_price)
            position.reserved = position_snapshot.reserved
            position.realized_pnl = position_snapshot.realized_pnl
            account.positions[position_snapshot.symbol] = position
        engine.accounts[account.user_id] = account
    for resting in snapshot.open_orders:
        order = _order_from_state(resting.order)
        order.reserved_cash = resting.reserved_cash_units
        engine.symbols[order.symbol].book.side(order.side).add(order)
        engine.open_orders[order.order_id] = order
        if order.user_id:
            engine.open_order_counts[order.user_id] = (
                engine.open_order_counts.get(order.user_id, 0) + 1
            )
    for state in engine.symbols.values():
        engine.refresh_last_quote(state)
    return engine


def _order_from_state(state: engine_pb2.OrderState) -> Order:
    order = Order(
        state.order_id,
        state.user_id,
        state.symbol,
        Side(state.side),
        OrderType(state.type),
        TimeInForce(state.time_in_force),
        state.price_ticks,
        state.quantity,
        state.created_ns,
        state.client_order_id,
    )
    order.filled_quantity = state.filled_quantity
    order.remaining = state.quantity - state.filled_quantity
    order.filled_notional = state.filled_notional_ticks
    order.status = OrderStatus(state.status)
    order.reason = Reason(state.reason)
    order.updated_at = state.updated_ns
    return order
