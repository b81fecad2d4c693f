"""A deliberately simple reference matcher, written from docs/matching.md and not from the engine.

Everything is a plain list or dict and every question is answered by scanning: the resting orders
of all symbols sit in one list, the best match is found by sorting on (price, arrival number),
and the reserved cash and position of an account are recomputed from its open orders whenever
they are needed. Costs and realized P&L are exact fractions of a cash unit (textbook average
cost), so the engine's integer bookkeeping can be held to them. It is slow on purpose; the
stateful test compares the engine against it.

Rules version 2: each execution costs the resting order's owner the maker fee (the rate when that
order was accepted) and the incoming order's owner the taker fee (hundredths of a basis point of
the notional, truncated toward zero, negative for a rebate; none for a user-less order), which
go to the fee account. A BUY holds cash for its limit (a MARKET BUY: the book's cost now) plus
the fee at the highest of the rates and zero, and each fill gives back its share of what the
order still holds (held x fill / remaining, rounded down; the last fill all of it). An order
that could take the position beyond +-position limit, counting every open order of its side, is
rejected; so is every order of a disabled user.

Every command returns what a participant observes, in order: ("trade", price, quantity, buy
order, sell order) per execution, ("order", kind, order id, status, reason, filled quantity,
filled notional, remaining) for each state an order passes through, ("fee", order id, fee) after
each fill, ("refused", refusal, order id), ("cancel rejected", order id, reason) and
("amend rejected", order id, reason).

An amend changes a resting order's price and/or total quantity: a smaller quantity at the same
price keeps its arrival number; anything else gives it a new one (the back of its level), its
hold and maker fee as a new order's, and a new price that crosses trades as an incoming order.

Only the enums are shared with the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from engine_svc.orders import OrderStatus, OrderType, Reason, Refusal, Side, TimeInForce

MAX_QUANTITY = 1_000_000
CASH_UNIT = Decimal("0.0001")
RATE_DENOMINATOR = 1_000_000  # a rate of 1 is 1/100 of a basis point: notional / 1,000,000


def fee_on(notional: int, rate: int) -> int:
    """The exact fee, truncated toward zero (int() of a Fraction truncates)."""
    return int(Fraction(notional * rate, RATE_DENOMINATOR))


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
    client_order_id: str = ""
    remaining: int = 0
    filled: int = 0
    notional: int = 0  # sum of price ticks x quantity over the fills
    status: OrderStatus = OrderStatus.NEW
    reason: Reason = Reason.NONE
    hold: int = 0
    """Cash a BUY held when it was accepted (its limit or book cost, plus the worst fee)."""
    worst_rate: int = 0
    """The highest fee rate (or 0) when it was accepted: what its hold was counted at."""
    maker_rate: int = 0
    """The maker fee when it was accepted: what it pays when it rests and trades."""
    fills: list[int] = field(default_factory=list)
    """The quantity of each of its executions."""


@dataclass
class RefAccount:
    cash: int
    starting_value: int
    fees_paid: int = 0
    disabled: bool = False
    positions: dict[str, int] = field(default_factory=dict)
    cost: dict[str, Fraction] = field(default_factory=dict)
    """What the open quantity cost (cash units), signed like it."""
    realized: dict[str, Fraction] = field(default_factory=dict)
    closes: dict[str, int] = field(default_factory=dict)
    """Fills that closed part of the position (each may round the engine's cost by < 1 unit)."""


@dataclass
class RefSymbol:
    tick_cash: int
    lot_size: int
    reference_price: int = 0
    halted: bool = False
    # The day's statistics (prices in ticks, 0 = none yet).
    last: int = 0
    volume: int = 0
    open: int = 0
    high: int = 0
    low: int = 0


Observed = tuple


class ReferenceMatcher:
    def __init__(
        self,
        short_limit: int = 0,
        max_open_orders: int = 0,
        position_limit: int = 0,
        maker_fee: int = 0,
        taker_fee: int = 0,
    ) -> None:
        self.short_limit = short_limit
        self.max_open_orders = max_open_orders
        self.position_limit = position_limit
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        self.fees_collected = 0
        self.market_open = True
        self.symbols: dict[str, RefSymbol] = {}
        self.accounts: dict[str, RefAccount] = {}
        self.orders: dict[str, RefOrder] = {}  # every order ever placed, finished ones too
        self.resting: list[RefOrder] = []  # open orders of all symbols, in arrival order
        self.client_orders: dict[tuple[str, str], str] = {}  # today's (user, clientOrderId)
        self.arrivals = 0
        self.log: list[Observed] = []
        self.moved: set[tuple[str, str]] = set()  # (user, symbol) positions moved by fills

    # ---- set-up ---------------------------------------------------------------------------

    def configure(
        self, short_limit: int, max_open_orders: int, maker_fee: int, taker_fee: int
    ) -> None:
        """New settings for orders from now on (the position limit stays as it is)."""
        self.short_limit = short_limit
        self.max_open_orders = max_open_orders
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee

    def add_symbol(
        self, symbol: str, tick_size: str = "0.01", lot_size: int = 1, reference_price: int = 0
    ) -> None:
        self.symbols[symbol] = RefSymbol(
            int(Decimal(tick_size) / CASH_UNIT), lot_size, reference_price
        )

    def create_account(
        self, user: str, cash: int, grants: tuple[tuple[str, int, int], ...] = ()
    ) -> bool:
        """Grants are (symbol, quantity, price ticks; 0 = the reference price). False if the
        account exists."""
        if user in self.accounts:
            return False
        account = RefAccount(cash, cash)
        for symbol, quantity, price in grants:
            spec = self.symbols[symbol]
            cost = quantity * (price or spec.reference_price) * spec.tick_cash
            account.positions[symbol] = quantity
            account.cost[symbol] = Fraction(cost)
            account.starting_value += cost
            self.moved.add((user, symbol))
        self.accounts[user] = account
        return True

    def adjust_cash(self, user: str, amount: int) -> Refusal | None:
        """None when done; cash and starting value move together."""
        account = self.accounts.get(user)
        if account is None:
            return Refusal.UNKNOWN_ACCOUNT
        if account.cash + amount < self.reserved_cash(user):
            return Refusal.INVALID_ARGUMENT
        account.cash += amount
        account.starting_value += amount
        return None

    # ---- what an account holds -------------------------------------------------------------

    def open_orders_of(self, user: str) -> list[RefOrder]:
        return [o for o in self.resting if o.user == user]

    @property
    def worst_rate(self) -> int:
        return max(0, self.maker_fee, self.taker_fee)

    def held_cash(self, order: RefOrder) -> int:
        """What an open BUY still holds: what its remainder could cost at its limit, plus the
        fee on that at the rate its hold was counted at."""
        if order.side != Side.BUY:
            return 0
        notional = order.price * order.remaining * self.symbols[order.symbol].tick_cash
        return notional + fee_on(notional, order.worst_rate)

    def reserved_cash(self, user: str) -> int:
        return sum(self.held_cash(o) for o in self.open_orders_of(user))

    def reservations(
        self,
    ) -> tuple[dict[str, int], dict[tuple[str, str], int], dict[tuple[str, str], int]]:
        """What every account's open orders hold: cash per user, position per (user, symbol);
        and what its open BUYs could add per (user, symbol)."""
        cash: dict[str, int] = {}
        positions: dict[tuple[str, str], int] = {}
        buying: dict[tuple[str, str], int] = {}
        for o in self.resting:
            key = (o.user, o.symbol)
            if o.side == Side.BUY:
                cash[o.user] = cash.get(o.user, 0) + self.held_cash(o)
                buying[key] = buying.get(key, 0) + o.remaining
            else:
                positions[key] = positions.get(key, 0) + o.remaining
        return cash, positions, buying

    def position(self, user: str, symbol: str) -> int:
        return self.accounts[user].positions.get(symbol, 0)

    def reserved_position(self, user: str, symbol: str) -> int:
        return sum(
            o.remaining
            for o in self.open_orders_of(user)
            if o.side == Side.SELL and o.symbol == symbol
        )

    def buying(self, user: str, symbol: str) -> int:
        return sum(
            o.remaining
            for o in self.open_orders_of(user)
            if o.side == Side.BUY and o.symbol == symbol
        )

    def mark(self, symbol: str, max_spread: int) -> int | None:
        """Cash units per share: the mid of a two-sided book at most `max_spread` ticks wide
        (rounded down), else the last trade held inside the book, else the reference price."""
        spec = self.symbols[symbol]
        bids = [o.price for o in self.resting if o.symbol == symbol and o.side == Side.BUY]
        asks = [o.price for o in self.resting if o.symbol == symbol and o.side == Side.SELL]
        bid, ask = max(bids, default=None), min(asks, default=None)
        if bid is not None and ask is not None and max_spread and ask - bid <= max_spread:
            return (bid + ask) * spec.tick_cash // 2
        if spec.last:
            price = spec.last
            if bid is not None:
                price = max(price, bid)
            if ask is not None:
                price = min(price, ask)
            return price * spec.tick_cash
        if spec.reference_price:
            return spec.reference_price * spec.tick_cash
        return None

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

    def observe(self, kind: str, order: RefOrder) -> None:
        self.log.append(
            (
                "order",
                kind,
                order.order_id,
                order.status,
                order.reason,
                order.filled,
                order.notional,
                order.remaining,
            )
        )

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
        client_order_id: str = "",
    ) -> list[Observed]:
        self.log = []
        if user and client_order_id:
            first = self.client_orders.get((user, client_order_id))
            if first is not None:
                return [("refused", Refusal.DUPLICATE_CLIENT_ORDER_ID, first)]
            self.client_orders[(user, client_order_id)] = order_id
        if type == OrderType.MARKET:
            price = 0
        self.arrivals += 1
        order = RefOrder(
            order_id,
            user,
            symbol,
            side,
            type,
            tif,
            price,
            quantity,
            self.arrivals,
            client_order_id,
            quantity,
        )
        self.orders[order_id] = order

        reason = self.rejection(order)
        if reason != Reason.NONE:
            order.status = OrderStatus.REJECTED
            order.reason = reason
            self.observe("rejected", order)
            return self.log
        self.observe("accepted", order)
        order.maker_rate = self.maker_fee

        if tif == TimeInForce.FOK and not self.fok_can_fill(order):
            order.status = OrderStatus.EXPIRED
            order.reason = Reason.FILL_OR_KILL
            self.observe("expired", order)
            return self.log

        for resting in self.opposite_in_priority(order):
            if order.remaining == 0:
                break
            if self.is_own(order, resting):
                self.finish(resting, OrderStatus.CANCELLED, Reason.SELF_TRADE)
                continue
            self.trade(order, resting)

        if order.remaining == 0:
            pass  # FILLED by its last trade
        elif type == OrderType.LIMIT and tif in (TimeInForce.GFD, TimeInForce.GTC):
            self.resting.append(order)
        elif type == OrderType.MARKET and order.filled == 0:
            order.status = OrderStatus.EXPIRED
            order.reason = Reason.NO_LIQUIDITY
            self.observe("expired", order)
        else:
            order.status = OrderStatus.EXPIRED
            order.reason = Reason.UNFILLED_REMAINDER
            self.observe("expired", order)
        return self.log

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
            or (order.type == OrderType.MARKET and order.tif in (TimeInForce.GFD, TimeInForce.GTC))
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
        if self.accounts[order.user].disabled:
            return Reason.USER_DISABLED
        if self.max_open_orders and len(self.open_orders_of(order.user)) >= self.max_open_orders:
            return Reason.OPEN_ORDER_LIMIT
        limit = self.position_limit
        if limit:
            held = self.position(order.user, order.symbol)
            if order.side == Side.BUY:
                most = held + self.buying(order.user, order.symbol) + order.quantity
            else:
                most = order.quantity + self.reserved_position(order.user, order.symbol) - held
            if most > limit:  # long for a BUY, short for a SELL
                return Reason.POSITION_LIMIT
        if order.side == Side.BUY:
            available = self.accounts[order.user].cash - self.reserved_cash(order.user)
            needed = self.cash_needed(order)
            if needed > available:
                return Reason.INSUFFICIENT_CASH
            order.hold, order.worst_rate = needed, self.worst_rate
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
        """LIMIT: price * quantity. MARKET: the cost of taking the book now, own orders skipped.
        Plus the worst fee on that."""
        tick_cash = self.symbols[order.symbol].tick_cash
        if order.type == OrderType.LIMIT:
            cost = order.price * order.quantity * tick_cash
        else:
            wanted = order.quantity
            cost = 0
            for resting in self.opposite_in_priority(order):
                if self.is_own(order, resting):
                    continue
                taken = min(wanted, resting.remaining)
                cost += taken * resting.price * tick_cash
                wanted -= taken
        return cost + fee_on(cost, self.worst_rate)

    def fok_can_fill(self, order: RefOrder) -> bool:
        reachable = sum(
            r.remaining for r in self.opposite_in_priority(order) if not self.is_own(order, r)
        )
        return reachable >= order.quantity

    def trade(self, order: RefOrder, resting: RefOrder) -> None:
        quantity = min(order.remaining, resting.remaining)
        price = resting.price
        for party in (order, resting):
            party.fills.append(quantity)
            party.remaining -= quantity
            party.filled += quantity
            party.notional += price * quantity
            if party.remaining == 0:
                party.status = OrderStatus.FILLED
            else:
                party.status = OrderStatus.PARTIALLY_FILLED
        if resting.remaining == 0:
            self.resting.remove(resting)

        spec = self.symbols[order.symbol]
        price_units = price * spec.tick_cash
        buy, sell = (order, resting) if order.side == Side.BUY else (resting, order)
        if buy.user:
            self.move(self.accounts[buy.user], order.symbol, quantity, price_units)
            self.moved.add((buy.user, order.symbol))
        if sell.user:
            self.move(self.accounts[sell.user], order.symbol, -quantity, price_units)
            self.moved.add((sell.user, order.symbol))
        notional = price_units * quantity
        fees = {}
        for party, rate in ((resting, resting.maker_rate), (order, self.taker_fee)):
            fees[party.order_id] = fee_on(notional, rate) if party.user else 0
            if party.user:
                account = self.accounts[party.user]
                account.cash -= fees[party.order_id]
                account.fees_paid += fees[party.order_id]
                self.fees_collected += fees[party.order_id]

        spec.last = price
        spec.volume += quantity
        if spec.open == 0:
            spec.open = spec.high = spec.low = price
        spec.high = max(spec.high, price)
        spec.low = min(spec.low, price)
        self.log.append(("trade", price, quantity, buy.order_id, sell.order_id))
        self.observe("filled", resting)
        self.log.append(("fee", resting.order_id, fees[resting.order_id]))
        self.observe("filled", order)
        self.log.append(("fee", order.order_id, fees[order.order_id]))

    @staticmethod
    def move(account: RefAccount, symbol: str, signed: int, price_units: int) -> None:
        """Cash and position by one fill (+ bought, - sold); average-cost P&L, exact."""
        account.cash -= signed * price_units
        held = account.positions.get(symbol, 0)
        cost = account.cost.get(symbol, Fraction(0))
        new = held + signed
        if held == 0 or (held > 0) == (signed > 0):
            cost += signed * price_units
        else:
            average = cost / held
            closed = min(abs(signed), abs(held))
            direction = 1 if held > 0 else -1
            account.realized[symbol] = (
                account.realized.get(symbol, Fraction(0))
                + (price_units - average) * closed * direction
            )
            account.closes[symbol] = account.closes.get(symbol, 0) + 1
            # What is left of the old position keeps its average; a flip opens at the fill price.
            cost = average * new if (new > 0) == (held > 0) else Fraction(new * price_units)
        account.positions[symbol] = new
        account.cost[symbol] = cost

    def finish(self, order: RefOrder, status: OrderStatus, reason: Reason) -> None:
        self.resting.remove(order)
        order.status = status
        order.reason = reason
        self.observe("cancelled" if status == OrderStatus.CANCELLED else "expired", order)

    def cancel(self, order_id: str, user: str, is_admin: bool = False) -> list[Observed]:
        self.log = []
        order = self.orders.get(order_id)
        if order is None or order not in self.resting:
            return [("cancel rejected", order_id, Reason.UNKNOWN_ORDER)]
        if order.user == user:
            reason = Reason.CANCELLED_BY_OWNER
        elif is_admin:
            reason = Reason.CANCELLED_BY_ADMIN
        else:
            return [("cancel rejected", order_id, Reason.NOT_ORDER_OWNER)]
        self.finish(order, OrderStatus.CANCELLED, reason)
        return self.log

    def amend(
        self, order_id: str, user: str, price: int | None, quantity: int | None
    ) -> list[Observed]:
        self.log = []
        order = self.orders.get(order_id)
        if order is None or order not in self.resting:
            return [("amend rejected", order_id, Reason.UNKNOWN_ORDER)]
        if order.user != user:
            return [("amend rejected", order_id, Reason.NOT_ORDER_OWNER)]
        new_price = order.price if price is None else price
        new_quantity = order.quantity if quantity is None else quantity
        spec = self.symbols[order.symbol]
        if (
            (price is None and quantity is None)
            or new_price <= 0
            or not 1 <= new_quantity <= MAX_QUANTITY
            or new_quantity % spec.lot_size
            or new_quantity <= order.filled
            or (new_price, new_quantity) == (order.price, order.quantity)
        ):
            return [("amend rejected", order_id, Reason.INVALID_ORDER)]
        if not self.market_open:
            return [("amend rejected", order_id, Reason.MARKET_CLOSED)]
        if spec.halted:
            return [("amend rejected", order_id, Reason.SYMBOL_HALTED)]
        requeued = new_price != order.price or new_quantity > order.quantity
        remaining = new_quantity - order.filled
        rate = self.worst_rate if requeued else order.worst_rate
        if user:
            reason = self.amend_rejection(order, new_price, remaining, rate)
            if reason != Reason.NONE:
                return [("amend rejected", order_id, reason)]
        old_price = order.price
        order.price, order.quantity, order.remaining = new_price, new_quantity, remaining
        if requeued:
            self.arrivals += 1
            order.arrival = self.arrivals
            self.resting.remove(order)
            self.resting.append(order)
            order.worst_rate = rate
            order.maker_rate = self.maker_fee
        self.observe("amended", order)
        if new_price != old_price:
            for resting in self.opposite_in_priority(order):
                if order.remaining == 0:
                    break
                if self.is_own(order, resting):
                    self.finish(resting, OrderStatus.CANCELLED, Reason.SELF_TRADE)
                    continue
                self.trade(order, resting)
            if order.remaining == 0:
                self.resting.remove(order)
        return self.log

    def amend_rejection(self, order: RefOrder, price: int, remaining: int, rate: int) -> Reason:
        """Can the owner back the order at its new price and remainder (what it holds now
        counts as available)?"""
        account = self.accounts[order.user]
        if account.disabled:
            return Reason.USER_DISABLED
        more = remaining - order.remaining
        held = self.position(order.user, order.symbol)
        limit = self.position_limit
        if order.side == Side.BUY:
            if limit and more > 0 and held + self.buying(order.user, order.symbol) + more > limit:
                return Reason.POSITION_LIMIT
            notional = price * remaining * self.symbols[order.symbol].tick_cash
            available = account.cash - self.reserved_cash(order.user) + self.held_cash(order)
            if notional + fee_on(notional, rate) > available:
                return Reason.INSUFFICIENT_CASH
            return Reason.NONE
        if more <= 0:
            return Reason.NONE
        selling = self.reserved_position(order.user, order.symbol)
        if limit and more + selling - held > limit:
            return Reason.POSITION_LIMIT
        if more > held - selling + self.short_limit:
            return Reason.INSUFFICIENT_POSITION
        return Reason.NONE

    def disable(self, user: str) -> list[Observed]:
        """Every open order of the user cancelled by the admin, new ones rejected."""
        self.log = []
        account = self.accounts.get(user)
        if account is None:
            return [("refused", Refusal.UNKNOWN_ACCOUNT, "")]
        for order in self.open_orders_of(user):
            self.finish(order, OrderStatus.CANCELLED, Reason.CANCELLED_BY_ADMIN)
        account.disabled = True
        return self.log

    def enable(self, user: str) -> list[Observed]:
        account = self.accounts.get(user)
        if account is None:
            return [("refused", Refusal.UNKNOWN_ACCOUNT, "")]
        account.disabled = False
        return []

    def cancel_all(self, user: str, symbol: str, is_admin: bool) -> list[Observed]:
        """The user's open orders (of `symbol`, or all), oldest first."""
        self.log = []
        if user not in self.accounts:
            return [("refused", Refusal.UNKNOWN_ACCOUNT, "")]
        if symbol and symbol not in self.symbols:
            return [("refused", Refusal.UNKNOWN_SYMBOL, "")]
        reason = Reason.CANCELLED_BY_ADMIN if is_admin else Reason.CANCELLED_BY_OWNER
        for order in self.open_orders_of(user):
            if not symbol or order.symbol == symbol:
                self.finish(order, OrderStatus.CANCELLED, reason)
        return self.log

    def close_market(self) -> list[Observed]:
        self.log = []
        if not self.market_open:
            return self.log
        self.market_open = False
        self.client_orders.clear()
        for order in list(self.resting):
            if order.tif == TimeInForce.GFD:
                self.finish(order, OrderStatus.EXPIRED, Reason.DAY_CLOSE)
        return self.log

    def open_market(self) -> None:
        if self.market_open:
            return
        self.market_open = True
        self.client_orders.clear()  # a new trading day: yesterday's clientOrderIds are free
        for spec in self.symbols.values():
            spec.volume = spec.open = spec.high = spec.low = 0

    def halt(self, symbol: str = "") -> bool:
        """True if a symbol's state changed."""
        return self._set_halted(symbol, True)

    def resume(self, symbol: str = "") -> bool:
        return self._set_halted(symbol, False)

    def _set_halted(self, symbol: str, halted: bool) -> bool:
        changed = False
        for name, spec in self.symbols.items():
            if (not symbol or name == symbol) and spec.halted != halted:
                spec.halted = halted
                changed = True
        return changed
