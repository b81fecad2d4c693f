"""Order vocabulary of the domain. Enum numbers equal the proto enums, so conversion is free."""

from __future__ import annotations

from enum import IntEnum


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


FINISHED_STATUSES = frozenset(
    (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.EXPIRED, OrderStatus.REJECTED)
)

MAX_ORDER_QUANTITY = 1_000_000


class Order:
    """One order and its live state. Prices are integer ticks, quantities integer units.

    The identity fields never change after creation; `remaining`, `filled_quantity`,
    `filled_notional`, `status`, `reason`, `updated_at` and `reserved_cash` move as it trades.
    """

    __slots__ = (
        "order_id",
        "user_id",
        "symbol",
        "side",
        "type",
        "time_in_force",
        "price",
        "quantity",
        "client_order_id",
        "created_at",
        "remaining",
        "filled_quantity",
        "filled_notional",
        "status",
        "reason",
        "updated_at",
        "reserved_cash",
    )

    def __init__(
        self,
        order_id: str,
        user_id: str,
        symbol: str,
        side: Side,
        type: OrderType,
        time_in_force: TimeInForce,
        price: int,
        quantity: int,
        created_at: int,
        client_order_id: str = "",
    ) -> None:
        self.order_id = order_id
        self.user_id = user_id
        self.symbol = symbol
        self.side = side
        self.type = type
        self.time_in_force = time_in_force
        self.price = price
        self.quantity = quantity
        self.client_order_id = client_order_id
        self.created_at = created_at
        self.remaining = quantity
        self.filled_quantity = 0
        self.filled_notional = 0
        self.status = OrderStatus.NEW
        self.reason = Reason.NONE
        self.updated_at = created_at
        self.reserved_cash = 0

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def __repr__(self) -> str:
        return (
            f"Order({self.order_id} {self.user_id or '-'} side={self.side} type={self.type} "
            f"tif={self.time_in_force} {self.quantity}@{self.price} filled={self.filled_quantity} "
            f"{self.status.name})"
        )
