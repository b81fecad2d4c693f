"""The participant form of the exchange's data, built in one place.

Inside, prices are integer ticks, cash integer units (0.0001 of the currency) and times
nanoseconds; participants see currency numbers, RFC 3339 timestamps and the shapes of SPEC.md.
The engine's caches, the stream service, the store and the gateway all build what they show
through these functions, so a field means the same wherever it is read.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from google.protobuf.timestamp_pb2 import Timestamp

from exchange.internal.v1 import engine_pb2
from exchange.v1 import accounts_pb2, types_pb2

CASH_UNITS_PER_CURRENCY = 10_000
NANOS_PER_SECOND = 1_000_000_000

Level = tuple[int, int, int]
"""(price ticks, quantity, order count) of one book level."""


def ticks_to_price(ticks: int, tick_size: float) -> float:
    """Ticks to a currency price; rounded to cash units so 10125 x 0.01 prints as 101.25."""
    return round(ticks * tick_size, 4)


def price_to_ticks(price: float, tick_size: Decimal) -> int | None:
    """Whole ticks of `price`, or None when it is not a whole number of ticks."""
    exact = Decimal(repr(price)) / tick_size
    ticks = int(exact.to_integral_value())
    return ticks if ticks == exact else None


def units_to_cash(units: int) -> float:
    return units / CASH_UNITS_PER_CURRENCY


def cash_to_units(cash: float) -> int | None:
    """Cash to integer units, or None when it has more than four decimals."""
    exact = Decimal(repr(cash)) * CASH_UNITS_PER_CURRENCY
    units = int(exact.to_integral_value())
    return units if units == exact else None


def timestamp(ns: int) -> Timestamp:
    return Timestamp(seconds=ns // NANOS_PER_SECOND, nanos=ns % NANOS_PER_SECOND)


def avg_fill_price(filled_notional_ticks: int, filled_quantity: int, tick_size: float) -> float:
    if not filled_quantity:
        return 0.0
    return round(filled_notional_ticks * tick_size / filled_quantity, 6)


ORDER_EVENT_KINDS = frozenset(
    (
        "order_accepted",
        "order_rejected",
        "order_filled",
        "order_cancelled",
        "order_expired",
        "order_amended",
    )
)
"""EngineEvent oneof names that carry an OrderState (the order's whole state after the event)."""

CONVERSION_EVENT_KINDS = frozenset(("conversion_executed", "conversion_rejected"))
"""EngineEvent oneof names of an ETF conversion's outcome (participant.conversion)."""

FINISHED = frozenset((types_pb2.FILLED, types_pb2.CANCELLED, types_pb2.EXPIRED, types_pb2.REJECTED))


def order(
    state: engine_pb2.OrderState, tick_size: float, fills: Iterable[types_pb2.Fill] = ()
) -> types_pb2.Order:
    """The SPEC order object from the engine's OrderState and the order's fills so far."""
    reason = types_pb2.OrderReason.Name(state.reason) if state.reason else ""
    return types_pb2.Order(
        order_id=state.order_id,
        user_id=state.user_id,
        symbol=state.symbol,
        side=state.side,
        type=state.type,
        time_in_force=state.time_in_force,
        price=ticks_to_price(state.price_ticks, tick_size),
        quantity=state.quantity,
        filled_quantity=state.filled_quantity,
        remaining_quantity=(
            0 if state.status in FINISHED else state.quantity - state.filled_quantity
        ),
        avg_fill_price=avg_fill_price(
            state.filled_notional_ticks, state.filled_quantity, tick_size
        ),
        status=state.status,
        reject_reason=reason if state.status == types_pb2.REJECTED else "",
        status_reason=reason,
        fills=list(fills),
        created_at=timestamp(state.created_ns),
        updated_at=timestamp(state.updated_ns),
        client_order_id=state.client_order_id,
    )


def fill(
    trade_id: str,
    price_ticks: int,
    quantity: int,
    timestamp_ns: int,
    tick_size: float,
    fee_units: int = 0,
) -> types_pb2.Fill:
    return types_pb2.Fill(
        trade_id=trade_id,
        price=ticks_to_price(price_ticks, tick_size),
        quantity=quantity,
        timestamp=timestamp(timestamp_ns),
        fee=units_to_cash(fee_units),
    )


def trade(
    symbol: str,
    trade_id: str,
    price_ticks: int,
    quantity: int,
    aggressor_side: int,
    timestamp_ns: int,
    sequence: int,
    tick_size: float,
) -> types_pb2.Trade:
    return types_pb2.Trade(
        trade_id=trade_id,
        price=ticks_to_price(price_ticks, tick_size),
        quantity=quantity,
        aggressor_side=aggressor_side,
        timestamp=timestamp(timestamp_ns),
        sequence=sequence,
        symbol=symbol,
    )


def quote(
    symbol: str,
    quote_ticks: engine_pb2.QuoteChanged,
    sequence: int,
    timestamp_ns: int,
    tick_size: float,
) -> types_pb2.Quote:
    """The SPEC quote (every field present even when zero) from the engine's QuoteChanged."""
    return types_pb2.Quote(
        symbol=symbol,
        ltp=ticks_to_price(quote_ticks.last_ticks, tick_size),
        last_quantity=quote_ticks.last_quantity,
        bid=ticks_to_price(quote_ticks.bid_ticks, tick_size),
        bid_size=quote_ticks.bid_size,
        ask=ticks_to_price(quote_ticks.ask_ticks, tick_size),
        ask_size=quote_ticks.ask_size,
        volume=quote_ticks.volume,
        open=ticks_to_price(quote_ticks.open_ticks, tick_size),
        high=ticks_to_price(quote_ticks.high_ticks, tick_size),
        low=ticks_to_price(quote_ticks.low_ticks, tick_size),
        timestamp=timestamp(timestamp_ns),
        sequence=sequence,
        mark=units_to_cash(quote_ticks.mark_units),
    )


def price_levels(levels: Iterable[Level], tick_size: float) -> list[types_pb2.PriceLevel]:
    return [
        types_pb2.PriceLevel(
            price=ticks_to_price(price, tick_size), quantity=quantity, orders=orders
        )
        for price, quantity, orders in levels
    ]


def book(
    symbol: str,
    bids: Iterable[Level],
    asks: Iterable[Level],
    sequence: int,
    timestamp_ns: int,
    tick_size: float,
) -> types_pb2.OrderBook:
    """Aggregated levels, bids best (highest) first, asks best (lowest) first."""
    return types_pb2.OrderBook(
        symbol=symbol,
        bids=price_levels(bids, tick_size),
        asks=price_levels(asks, tick_size),
        sequence=sequence,
        timestamp=timestamp(timestamp_ns),
    )


def symbol_info(
    symbol: str,
    tick_size: str,
    lot_size: int,
    status: int,
    reference_price_ticks: int,
    basket: Iterable[tuple[str, int]] = (),
    conversion_fee_units: int = 0,
) -> types_pb2.SymbolInfo:
    tick = float(tick_size)
    return types_pb2.SymbolInfo(
        symbol=symbol,
        tick_size=tick,
        lot_size=lot_size,
        status=status,
        reference_price=ticks_to_price(reference_price_ticks, tick),
        basket=dict(basket),
        conversion_fee=units_to_cash(conversion_fee_units),
    )


def conversion(event: engine_pb2.EngineEvent) -> types_pb2.Conversion:
    """The participant's Conversion from a ConversionExecuted or ConversionRejected event."""
    kind = event.WhichOneof("event")
    done = getattr(event, kind)
    view = types_pb2.Conversion(
        conversion_id=done.conversion_id,
        user_id=done.user_id,
        symbol=event.symbol,
        direction=done.direction,
        quantity=done.quantity,
        timestamp=timestamp(event.timestamp_ns),
    )
    if kind == "conversion_executed":
        view.status = types_pb2.FILLED
        view.fee = units_to_cash(done.fee_units)
        for leg in done.legs:
            view.legs.add(symbol=leg.symbol, quantity=leg.quantity, position=leg.position)
    else:
        view.status = types_pb2.REJECTED
        view.reject_reason = types_pb2.OrderReason.Name(done.reason)
        view.message = done.message
    return view


def account(
    user_id: str,
    cash_units: int,
    reserved_cash_units: int,
    positions: Iterable[tuple[str, int, int]],
    realized_pnl_units: int,
    starting_value_units: int,
    fees_paid_units: int = 0,
) -> accounts_pb2.GetAccountResponse:
    """Cash and positions ((symbol, quantity, cost units) each); marking to market (equity,
    unrealized P&L, P&L) is the reader's, at the prices of the moment it reads."""
    view = accounts_pb2.GetAccountResponse(
        user_id=user_id,
        cash=units_to_cash(cash_units),
        reserved_cash=units_to_cash(reserved_cash_units),
        available_cash=units_to_cash(cash_units - reserved_cash_units),
        realized_pnl=units_to_cash(realized_pnl_units),
        starting_value=units_to_cash(starting_value_units),
        fees_paid=units_to_cash(fees_paid_units),
    )
    for symbol, quantity, cost_units in positions:
        average = cost_units / quantity / CASH_UNITS_PER_CURRENCY if quantity else 0.0
        view.positions.add(symbol=symbol, quantity=quantity, avg_price=round(average, 6))
    return view
