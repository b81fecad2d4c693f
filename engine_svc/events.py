"""Events the engine emits, in past tense. Immutable tuples: cheap to build on the hot path.

Every event starts with (symbol, sequence, timestamp). `sequence` counts the symbol's market
data events (book, trade, quote, symbol added), +1 each, so market-data consumers see no gaps;
order events and market state carry the current value without increasing it; 0
only for replies that belong to no symbol's stream (CancelRejected, and orders rejected for an
unknown symbol). Order events hold the `Order` itself for its identity fields;
an order is final when its finishing event is emitted, so OrderRejected/Cancelled/Expired read
the rest from it, while OrderFilled carries the state as of that fill.
"""

from __future__ import annotations

from typing import NamedTuple

from engine_svc.orders import Order, OrderStatus, Reason, Side, SymbolStatus


class OrderAccepted(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    order: Order


class OrderRejected(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    order: Order


class OrderFilled(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    order: Order
    trade_id: str
    price: int
    quantity: int
    filled_quantity: int
    filled_notional: int
    status: OrderStatus


class OrderCancelled(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    order: Order


class OrderExpired(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    order: Order


class CancelRejected(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    order_id: str
    user_id: str
    reason: Reason


class TradeExecuted(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    trade_id: str
    price: int
    quantity: int
    aggressor_side: Side
    buy_order_id: str
    sell_order_id: str
    buyer_id: str
    seller_id: str


class BookLevelChanged(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    side: Side
    price: int
    quantity: int
    order_count: int


class QuoteChanged(NamedTuple):
    """Top of book and the day's statistics; a price of 0 means none."""

    symbol: str
    sequence: int
    timestamp: int
    bid: int
    bid_size: int
    ask: int
    ask_size: int
    last: int
    last_quantity: int
    volume: int
    open: int
    high: int
    low: int


class MarketStateChanged(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    status: SymbolStatus


class SymbolAdded(NamedTuple):
    symbol: str
    sequence: int
    timestamp: int
    tick_size: str
    lot_size: int


Event = (
    OrderAccepted
    | OrderRejected
    | OrderFilled
    | OrderCancelled
    | OrderExpired
    | CancelRejected
    | TradeExecuted
    | BookLevelChanged
    | QuoteChanged
    | MarketStateChanged
    | SymbolAdded
)
