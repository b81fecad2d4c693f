"""Order vocabulary of the domain. Enum numbers equal the proto enums, so conversion is free."""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple


class Side(IntEnum):
    BUY = 1
    SELL = 2


class OrderType(IntEnum):
    LIMIT = 1
    MARKET = 2


class TimeInForce(IntEnum):
    GFD = 1
    IOC = 2
    FOK = 3
    GTC = 4


class OrderStatus(IntEnum):
    NEW = 1
    PARTIALLY_FILLED = 2
    FILLED = 3
    CANCELLED = 4
    EXPIRED = 5
    REJECTED = 6


class SymbolStatus(IntEnum):
    OPEN = 1
    HALTED = 2
    CLOSED = 3


class Reason(IntEnum):
    """Why an order was rejected, cancelled or expired (proto OrderReason)."""

    NONE = 0
    INVALID_ORDER = 1
    UNKNOWN_SYMBOL = 2
    UNKNOWN_USER = 3
    MARKET_CLOSED = 4
    SYMBOL_HALTED = 5
    INSUFFICIENT_CASH = 6
    INSUFFICIENT_POSITION = 7
    OPEN_ORDER_LIMIT = 8
    SELF_TRADE = 9
    CANCELLED_BY_OWNER = 10
    CANCELLED_BY_ADMIN = 11
    UNFILLED_REMAINDER = 12
    FILL_OR_KILL = 13
    NO_LIQUIDITY = 14
    DAY_CLOSE = 15
    UNKNOWN_ORDER = 16
    NOT_ORDER_OWNER = 17
    POSITION_LIMIT = 18
    USER_DISABLED = 19
    NOT_CONVERTIBLE = 20


class Direction(IntEnum):
    """Which way an ETF conversion goes (proto ConversionDirection)."""

    CREATE = 1
    REDEEM = 2


class Refusal(IntEnum):
    """Why the engine did not carry out a command (proto RefusalReason)."""

    DUPLICATE_CLIENT_ORDER_ID = 1
    ACCOUNT_EXISTS = 2
    SYMBOL_EXISTS = 3
    UNKNOWN_SYMBOL = 4
    UNKNOWN_ACCOUNT = 5
    INVALID_ARGUMENT = 6
    DUPLICATE_NEWS_ID = 7
    FAILED_PRECONDITION = 8


FINISHED_STATUSES = frozenset(
    (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.EXPIRED, OrderStatus.REJECTED)
)

MAX_ORDER_QUANTITY = 1_000_000


class OrderTerms(NamedTuple):
    """What an order is, fixed when it is placed: events carry it as a value, never the live
    order, so an event says what was true when it was emitted."""

    order_id: str
    user_id: str
    symbol: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    price: int
    quantity: int
    client_order_id: str
    created_at: int


class Order:
    """One order and its live state. Prices are integer ticks, quantities integer units.

    The terms are also kept as plain attributes, which the matching loop reads far more cheaply
    than tuple fields. `remaining`, `filled_quantity`, `filled_notional`, `status`, `reason`,
    `updated_at` and `reserved_cash` move as it trades.
    """

    __slots__ = (
        "terms",
        "order_id",
        "user_id",
        "symbol",
        "side",
        "type",
        "time_in_force",
        "price",
        "quantity",
        "remaining",
        "filled_quantity",
        "filled_notional",
        "status",
        "reason",
        "updated_at",
        "reserved_cash",
        "maker_fee",
        "hold_fee",
    )

    def __init__(self, terms: OrderTerms) -> None:
        self.terms = terms
        (
            self.order_id,
            self.user_id,
            self.symbol,
            self.side,
            self.type,
            self.time_in_force,
            self.price,
            self.quantity,
            _,
            self.updated_at,
        ) = terms
        self.remaining = self.quantity
        self.filled_quantity = 0
        self.filled_notional = 0
        self.status = OrderStatus.NEW
        self.reason = Reason.NONE
        self.reserved_cash = 0
        self.maker_fee = 0
        """The maker fee rate when it was placed: a resting order pays what it was accepted at
        (its BUY cash was held for it)."""
        self.hold_fee = 0
        """The fee rate a BUY's cash is held at: the worst rate when it was placed."""

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def __repr__(self) -> str:
        return (
            f"Order({self.order_id} {self.user_id or '-'} side={self.side} type={self.type} "
            f"tif={self.time_in_force} {self.quantity}@{self.price} filled={self.filled_quantity} "
            f"{self.status.name})"
        )
