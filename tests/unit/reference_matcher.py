"""A deliberately simple reference matcher, written from docs/matching.md and not from the engine.

Everything is a plain list or dict and every question is answered by scanning: the resting orders
of all symbols sit in one list, the best match is found by `min` over (price, arrival number),
and the reserved cash and position of an account are recomputed from its open orders whenever
they are needed. It is slow on purpose; the stateful test compares the engine against it.

Only the enums are shared with the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from engine_svc.orders import OrderStatus, OrderType, Reason, Side, TimeInForce

MAX_QUANTITY = 1_000_000
CASH_UNIT = Decimal("0.0001")


@dataclass
class RefOrder:
    order_id: str
    user: str
    symbol: str
    side: Side
    type: OrderType
    tif: TimeInForce
    price: int
    quantity: int
    arrival: int
    remaining: int = 0
    filled: int = 0
    status: OrderStatus = OrderStatus.NEW
    reason: Reason = Reason.NONE


@dataclass
class RefAccount:
    cash: int
    positions: dict[str, int] = field(default_factory=dict)


@dataclass
class RefSymbol:
    tick_cash: int
    lot_size: int
    halted: bool = False
    # The day's statistics (prices in ticks, 0 = none yet).
    last: int = 0
    volume: int = 0
    open: int = 0
    high: int = 0
    low: int = 0


@dataclass(frozen=True)
class Fill:
    price: int
    quantity: int
    buy_order_id: str
    sell_order_id: str


class ReferenceMatcher:
    def __init__(self, short_limit: int = 0, max_open_orders: int = 0) -> None:
        self.short_limit = short_limit
        self.max_open_orders = max_open_orders
        self.market_open = True
        self.symbols: dict[str, RefSymbol] = {}
        self.accounts: dict[str, RefAccount] = {}
        self.orders: dict[str, RefOrder] = {}  # every order ever placed, finished ones too
        self.resting: list[RefOrder] = []  # open orders of all symbols, in arrival order
        self.arrivals = 0

    # ---- set-up ---------------------------------------------------------------------------

    def add_symbol(self, symbol: str, tick_size: str = "0.01", lot_size: int = 1) -> None:
        self.symbols[symbol] = RefSymbol(int(Decimal(tick_size) / CASH_UNIT), lot_size)

    def create_account(self, user: str, cash: int, positions: dict[str, int] | None = None) -> None:
        self.accounts[user] = RefAccount(cash, dict(positions or {}))

    # ---- what an account holds -------------------------------------------------------------

    def open_orders_of(self, user: str) -> list[RefOrder]:
        return [o for o in self.resting if o.user == user]

    def reserved_cash(self, user: str) -> int:
        return sum(
            o.price * o.remaining * self.symbols[o.symbol].tick_cash
            for o in self.open_orders_of(user)
            if o.side == Side.BUY
        )

    def position(self, user: str, symbol: str) -> int:
        return self.accounts[user].positions.get(symbol, 0)

    def reserved_position(self, user: str, symbol: str) -> int:
        return sum(
            o.remaining
            for o in self.open_orders_of(user)
            if o.side == Side.SELL and o.symbol == symbol
        )

    # ---- the book ---------------------------------------------------------------------------

    @staticmethod
    def crosses(order: RefOrder, resting_price: int) -> bool:
        if order.type == OrderType.MARKET:
            return True
        if order.side == Side.BUY:
            return resting_price <= order.price
        return resting_price >= order.price

    def opposite_in_priority(self, order: RefOrder) -> list[RefOrder]:
        """Resting orders the incoming order may reach, best price first, oldest first."""
        candidates = [
            r
            for r in self.resting
            if r.symbol == order.symbol and r.side != order.side and self.crosses(order, r.price)
        ]
        if order.side == Side.BUY:
            return sorted(candidates, key=lambda r: (r.price, r.arrival))
        return sorted(candidates, key=lambda r: (-r.price, r.arrival))

    def is_own(self, order: RefOrder, resting: RefOrder) -> bool:
        return bool(order.user) and resting.user == order.user

    def book(self, symbol: str, side: Side) -> list[tuple[int, list[str], list[int]]]:
        """(price, order ids in time order, their remaining quantities) per level, best first."""
        orders = [o for o in self.resting if o.symbol == symbol and o.side == side]
        prices = sorted({o.price for o in orders}, reverse=(side == Side.BUY))
        levels = []
        for price in prices:
            at_price = sorted((o for o in orders if o.price == price), key=lambda o: o.arrival)
            levels.append((price, [o.order_id for o in at_price], [o.remaining for o in at_price]))
        return levels

    # ---- commands ---------------------------------------------------------------------------

    def place(
        self,
        order_id: str,
        user: str,
        symbol: str,
        side: Side,
        type: OrderType,
        tif: TimeInForce,
        price: int,
        quantity: int,
    ) -> list[Fill]:
        if type == OrderType.MARKET:
            price = 0
        self.arrivals += 1
        order = RefOrder(
            order_id, user, symbol, side, type, tif, price, quantity, self.arrivals, quantity
        )
        self.orders[order_id] = order

        reason = self.rejection(order)
        if reason != Reason.NONE:
            order.status = OrderStatus.REJECTED
            order.reason = reason
            return []

        if tif == TimeInForce.FOK and not self.fok_can_fill(order):
            order.status = OrderStatus.EXPIRED
            order.reason = Reason.FILL_OR_KILL
            return []

        fills = []
        for resting in self.opposite_in_priority(order):
            if order.remaining == 0:
                break
            if self.is_own(order, resting):
                self.finish(resting, OrderStatus.CANCELLED, Reason.SELF_TRADE)
                continue
            fills.append(self.trade(order, resting))

        if order.remaining == 0:
            order.status = OrderStatus.FILLED
        elif type == OrderType.LIMIT and tif in (TimeInForce.GFD, TimeInForce.GTC):
            self.resting.append(order)
        elif type == OrderType.MARKET and order.filled == 0:
            order.status = OrderStatus.EXPIRED
            order.reason = Reason.NO_LIQUIDITY
        else:
            order.status = OrderStatus.EXPIRED
            order.reason = Reason.UNFILLED_REMAINDER
        return fills

    def rejection(self, order: RefOrder) -> Reason:
        spec = self.symbols.get(order.symbol)
        if spec is None:
            return Reason.UNKNOWN_SYMBOL
        if (
            order.side not in list(Side)
            or order.type not in list(OrderType)
            or order.tif not in list(TimeInForce)
            or not 1 <= order.quantity <= MAX_QUANTITY
            or order.quantity % spec.lot_size != 0
            or (order.type == OrderType.LIMIT and order.price <= 0)
            or (
                order.type == OrderType.MARKET
                and order.tif in (TimeInForce.GFD, TimeInForce.GTC)
            )
        ):
            return Reason.INVALID_ORDER
        if not self.market_open:
            return Reason.MARKET_CLOSED
        if spec.halted:
            return Reason.SYMBOL_HALTED
        if not order.user:
            return Reason.NONE
        if order.user not in self.accounts:
            return Reason.UNKNOWN_USER
        if self.max_open_orders and len(self.open_orders_of(order.user)) >= self.max_open_orders:
            return Reason.OPEN_ORDER_LIMIT
        if order.side == Side.BUY:
            available = self.accounts[order.user].cash - self.reserved_cash(order.user)
            if self.cash_needed(order) > available:
                return Reason.INSUFFICIENT_CASH
        else:
            free = (
                self.position(order.user, order.symbol)
                - self.reserved_position(order.user, order.symbol)
                + self.short_limit
            )
            if order.quantity > free:
                return Reason.INSUFFICIENT_POSITION
        return Reason.NONE

    def cash_needed(self, order: RefOrder) -> int:
        """LIMIT: price * quantity. MARKET: the cost of taking the book now, own orders skipped."""
        tick_cash = self.symbols[order.symbol].tick_cash
        if order.type == OrderType.LIMIT:
            return order.price * order.quantity * tick_cash
        wanted = order.quantity
        cost = 0
        for resting in self.opposite_in_priority(order):
            if self.is_own(order, resting):
                continue
            taken = min(wanted, resting.remaining)
            cost += taken * resting.price * tick_cash
            wanted -= taken
        return cost

    def fok_can_fill(self, order: RefOrder) -> bool:
        reachable = sum(
            r.remaining for r in self.opposite_in_priority(order) if not self.is_own(order, r)
        )
        return reachable >= order.quantity

    def trade(self, order: RefOrder, resting: RefOrder) -> Fill:
        quantity = min(order.remaining, resting.remaining)
        price = resting.price
        for party in (order, resting):
            party.remaining -= quantity
            party.filled += quantity
            if party.remaining == 0:
                party.status = OrderStatus.FILLED
            else:
                party.status = OrderStatus.PARTIALLY_FILLED
        if resting.remaining == 0:
            self.resting.remove(resting)

        spec = self.symbols[order.symbol]
        notional = price * quantity * spec.tick_cash
        buy, sell = (order, resting) if order.side == Side.BUY else (resting, order)
        if buy.user:
            account = self.accounts[buy.user]
            account.cash -= notional
            account.positions[order.symbol] = account.positions.get(order.symbol, 0) + quantity
        if sell.user:
            account = self.accounts[sell.user]
            account.cash += notional
            account.positions[order.symbol] = account.positions.get(order.symbol, 0) - quantity

        spec.last = price
        spec.volume += quantity
        if spec.open == 0:
            spec.open = spec.high = spec.low = price
        spec.high = max(spec.high, price)
        spec.low = min(spec.low, price)
        return Fill(price, quantity, buy.order_id, sell.order_id)

    def finish(self, order: RefOrder, status: OrderStatus, reason: Reason) -> None:
        self.resting.remove(order)
        order.status = status
        order.reason = reason

    def cancel(self, order_id: str, user: str, is_admin: bool = False) -> Reason:
        """The reason the order was cancelled with, or why the cancel was refused."""
        order = self.orders.get(order_id)
        if order is None or order not in self.resting:
            return Reason.UNKNOWN_ORDER
        if order.user == user:
            reason = Reason.CANCELLED_BY_OWNER
        elif is_admin:
            reason = Reason.CANCELLED_BY_ADMIN
        else:
            return Reason.NOT_ORDER_OWNER
        self.finish(order, OrderStatus.CANCELLED, reason)
        return reason

    def close_market(self) -> None:
        if not self.market_open:
            return
        self.market_open = False
        for order in list(self.resting):
            if order.tif == TimeInForce.GFD:
                self.finish(order, OrderStatus.EXPIRED, Reason.DAY_CLOSE)

    def open_market(self) -> None:
        if self.market_open:
            return
        self.market_open = True
        for spec in self.symbols.values():
            spec.volume = spec.open = spec.high = spec.low = 0

    def halt(self, symbol: str = "") -> None:
        for name, spec in self.symbols.items():
            if not symbol or name == symbol:
                spec.halted = True

    def resume(self, symbol: str = "") -> None:
        for name, spec in self.symbols.items():
            if not symbol or name == symbol:
                spec.halted = False
