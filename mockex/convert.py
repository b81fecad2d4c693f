"""Between the engine's integers (ticks, cash units, nanoseconds) and the participants' numbers."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from google.protobuf.timestamp_pb2 import Timestamp

from exchange.internal.v1 import engine_pb2
from exchange.v1 import types_pb2

CASH_UNITS_PER_CURRENCY = 10_000
NANOS_PER_SECOND = 1_000_000_000


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
    ("order_accepted", "order_rejected", "order_filled", "order_cancelled", "order_expired")
)
"""EngineEvent oneof names that carry an OrderState (the order's whole state after the event)."""

FINISHED = frozenset((types_pb2.FILLED, types_pb2.CANCELLED, types_pb2.EXPIRED, types_pb2.REJECTED))


def public_order(
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


def public_fill(
    filled: engine_pb2.OrderFilled, timestamp_ns: int, tick_size: float
) -> types_pb2.Fill:
    return types_pb2.Fill(
        trade_id=filled.trade_id,
        price=ticks_to_price(filled.price_ticks, tick_size),
        quantity=filled.quantity,
        timestamp=timestamp(timestamp_ns),
    )
