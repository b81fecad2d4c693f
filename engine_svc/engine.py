"""The matching engine: commands and times in, events out. No I/O, no clock, no randomness.

Continuous price-time priority per symbol; a trade executes at the resting order's price. Accounts
are checked and moved for orders that carry a user id; user-less orders (benchmark flows) skip
accounts and self-trade prevention. Business-rule violations become REJECTED orders with a reason,
never exceptions. Admin commands with bad arguments (a duplicate symbol, say) raise ValueError:
the service validates them before they reach the engine.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from engine_svc.accounts import CASH_UNITS_PER_CURRENCY, Account
from engine_svc.book import BookSide, OrderBook, PriceLevel
from engine_svc.events import (
    BookLevelChanged,
    CancelRejected,
    Event,
    MarketStateChanged,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    QuoteChanged,
    SymbolAdded,
    TradeExecuted,
)
from engine_svc.orders import (
    MAX_ORDER_QUANTITY,
    Order,
    OrderStatus,
    OrderType,
    Reason,
    Side,
    SymbolStatus,
    TimeInForce,
)

BUY = Side.BUY
SELL = Side.SELL
LIMIT = OrderType.LIMIT
MARKET = OrderType.MARKET
NEW = OrderStatus.NEW
PARTIALLY_FILLED = OrderStatus.PARTIALLY_FILLED
FILLED = OrderStatus.FILLED
CANCELLED = OrderStatus.CANCELLED
EXPIRED = OrderStatus.EXPIRED
REJECTED = OrderStatus.REJECTED
GFD = TimeInForce.GFD
FOK = TimeInForce.FOK
RESTING_TIME_IN_FORCE = (GFD, TimeInForce.GTC)
_new = tuple.__new__
"""Events are built with tuple.__new__(EventClass, (fields...)): it skips the NamedTuple's
Python-level __new__, one call per event on the hot path (measured ~1.13x on the engine bench)."""
VALID_SIDES = frozenset(Side)
VALID_TYPES = frozenset(OrderType)
VALID_TIME_IN_FORCE = frozenset(TimeInForce)


class SymbolState:
    """One instrument: its specification, book, event sequence and the day's statistics."""

    __slots__ = (
        "symbol",
        "tick_size",
        "tick_size_value",
        "tick_cash",
        "lot_size",
        "book",
        "sequence",
        "halted",
        "trade_count",
        "last",
        "last_quantity",
        "volume",
        "open",
        "high",
        "low",
        "last_quote",
    )

    def __init__(self, symbol: str, tick_size: str, lot_size: int) -> None:
        self.symbol = symbol
        self.tick_size = tick_size
        self.tick_size_value = float(tick_size)
        self.tick_cash = int(Decimal(tick_size) * CASH_UNITS_PER_CURRENCY)
        self.lot_size = lot_size
        self.book = OrderBook(symbol)
        self.sequence = 0
        self.halted = False
        self.trade_count = 0
        self.last = 0
        self.last_quantity = 0
        self.volume = 0
        self.open = 0
        self.high = 0
        self.low = 0
        self.last_quote: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)


def parse_tick_size(tick_size: str) -> Decimal:
    """A tick must be positive and a whole number of cash units (0.0001)."""
    try:
        value = Decimal(tick_size)
    except InvalidOperation as exc:
        raise ValueError(f"tick_size {tick_size!r} is not a number") from exc
    if not value.is_finite() or value <= 0:
        raise ValueError(f"tick_size {tick_size!r} must be positive")
    if (value * CASH_UNITS_PER_CURRENCY) % 1:
        raise ValueError(f"tick_size {tick_size!r} must be a multiple of 0.0001")
    return value


class MatchingEngine:
    """All symbols and accounts of one exchange. The single writer: call it from one thread."""

    def __init__(
        self, *, market_open: bool = True, short_limit: int = 0, max_open_orders: int = 0
    ) -> None:
        self.market_open = market_open
        self.short_limit = short_limit
        """How far below zero a position may go per symbol (0: no shorting)."""
        self.max_open_orders = max_open_orders
        """Open orders allowed per user (0: no limit)."""
        self.symbols: dict[str, SymbolState] = {}
        self.accounts: dict[str, Account] = {}
        self.open_orders: dict[str, Order] = {}
        self.open_order_counts: dict[str, int] = {}

    # ---- admin commands -------------------------------------------------------------------

    def add_symbol(
        self, symbol: str, now: int, tick_size: str = "0.01", lot_size: int = 1
    ) -> list[Event]:
        if symbol in self.symbols:
            raise ValueError(f"symbol {symbol!r} already exists")
        if lot_size < 1:
            raise ValueError(f"lot_size {lot_size} must be at least 1")
        tick_size = str(parse_tick_size(tick_size))
        state = self.symbols[symbol] = SymbolState(symbol, tick_size, lot_size)
        state.sequence = 1
        return [SymbolAdded(symbol, 1, now, tick_size, lot_size)]

    def create_account(
        self, user_id: str, cash: int, positions: dict[str, int] | None = None
    ) -> None:
        """Open an account with `cash` in cash units and starting positions per symbol."""
        if not user_id:
            raise ValueError("user_id must not be empty")
        if user_id in self.accounts:
            raise ValueError(f"account {user_id!r} already exists")
        self.accounts[user_id] = Account(user_id, cash, positions)

    def symbol_status(self, state: SymbolState) -> SymbolStatus:
        if not self.market_open:
            return SymbolStatus.CLOSED
        return SymbolStatus.HALTED if state.halted else SymbolStatus.OPEN

    def open_market(self, now: int) -> list[Event]:
        """Start a trading day: the day's statistics restart."""
        events: list[Event] = []
        if self.market_open:
            return events
        self.market_open = True
        for state in self.symbols.values():
            state.open = state.high = state.low = state.volume = 0
            self._emit_market_state(state, events, now)
            self._emit_quote_if_changed(state, events, now, force=True)
        return events

    def close_market(self, now: int) -> list[Event]:
        """End the trading day: every resting GFD order expires (GTC orders stay)."""
        events: list[Event] = []
        if not self.market_open:
            return events
        self.market_open = False
        for state in self.symbols.values():
            for book_side in (state.book.bids, state.book.asks):
                for level in list(book_side.iter_levels()):
                    for order in list(level.orders.values()):
                        if order.time_in_force == GFD:
                            self._remove_resting(state, book_side, level, order, events, now)
                            self._finish(order, EXPIRED, Reason.DAY_CLOSE, now)
                            events.append(
                                _new(OrderExpired, (state.symbol, state.sequence, now, order))
                            )
            self._emit_market_state(state, events, now)
            self._emit_quote_if_changed(state, events, now)
        return events

    def halt(self, now: int, symbol: str = "") -> list[Event]:
        return self._set_halted(True, symbol, now)

    def resume(self, now: int, symbol: str = "") -> list[Event]:
        return self._set_halted(False, symbol, now)

    def _set_halted(self, halted: bool, symbol: str, now: int) -> list[Event]:
        if symbol and symbol not in self.symbols:
            raise ValueError(f"unknown symbol {symbol!r}")
        states = [self.symbols[symbol]] if symbol else list(self.symbols.values())
        events: list[Event] = []
        for state in states:
            if state.halted != halted:
                state.halted = halted
                self._emit_market_state(state, events, now)
        return events

    def _emit_market_state(self, state: SymbolState, events: list[Event], now: int) -> None:
        """Market state goes to the exchange-events channel, not market data, so like order
        events it carries the symbol's sequence without increasing it."""
        events.append(
            _new(MarketStateChanged, (state.symbol, state.sequence, now, self.symbol_status(state)))
        )

    # ---- orders ---------------------------------------------------------------------------

    def place_order(
        self,
        order_id: str,
        user_id: str,
        symbol: str,
        side: Side,
        type: OrderType,
        time_in_force: TimeInForce,
        price: int,
        quantity: int,
        now: int,
        client_order_id: str = "",
    ) -> list[Event]:
        """Accept or reject a new order, match it, and rest or expire what is left."""
        if type == MARKET:
            price = 0
        order = Order(
            order_id,
            user_id,
            symbol,
            side,
            type,
            time_in_force,
            price,
            quantity,
            now,
            client_order_id,
        )
        events: list[Event] = []
        state = self.symbols.get(symbol)
        if state is None:
            self._finish(order, REJECTED, Reason.UNKNOWN_SYMBOL, now)
            events.append(_new(OrderRejected, (symbol, 0, now, order)))
            return events

        account = None
        reason = self._validate(order, state)
        if not reason and user_id:
            account = self.accounts.get(user_id)
            reason = self._reserve(order, state, account)
        if reason:
            self._finish(order, REJECTED, reason, now)
            events.append(_new(OrderRejected, (symbol, state.sequence, now, order)))
            return events

        self.open_orders[order_id] = order
        if user_id:
            self.open_order_counts[user_id] = self.open_order_counts.get(user_id, 0) + 1
        events.append(_new(OrderAccepted, (symbol, state.sequence, now, order)))

        if time_in_force == FOK and not self._can_fill_whole(order, state):
            self._finish(order, EXPIRED, Reason.FILL_OR_KILL, now)
            events.append(_new(OrderExpired, (symbol, state.sequence, now, order)))
            return events

        self._match(order, state, events, now)

        if order.remaining:
            if type == LIMIT and time_in_force in RESTING_TIME_IN_FORCE:
                book_side = state.book.bids if side == BUY else state.book.asks
                level = book_side.add(order)
                state.sequence += 1
                events.append(
                    _new(
                        BookLevelChanged,
                        (
                            symbol,
                            state.sequence,
                            now,
                            side,
                            level.price,
                            level.quantity,
                            len(level.orders),
                        ),
                    )
                )
            else:
                if type == MARKET and not order.filled_quantity:
                    expiry_reason = Reason.NO_LIQUIDITY
                else:
                    expiry_reason = Reason.UNFILLED_REMAINDER
                self._finish(order, EXPIRED, expiry_reason, now)
                events.append(_new(OrderExpired, (symbol, state.sequence, now, order)))
        self._emit_quote_if_changed(state, events, now)
        return events

    def cancel_order(
        self, order_id: str, user_id: str, now: int, is_admin: bool = False
    ) -> list[Event]:
        """Cancel an open order; only its owner or an admin may."""
        order = self.open_orders.get(order_id)
        if order is None:
            return [CancelRejected("", 0, now, order_id, user_id, Reason.UNKNOWN_ORDER)]
        if order.user_id != user_id and not is_admin:
            return [CancelRejected(order.symbol, 0, now, order_id, user_id, Reason.NOT_ORDER_OWNER)]
        state = self.symbols[order.symbol]
        book_side = state.book.bids if order.side == BUY else state.book.asks
        events: list[Event] = []
        self._remove_resting(state, book_side, book_side.levels[order.price], order, events, now)
        reason = (
            Reason.CANCELLED_BY_OWNER if order.user_id == user_id else Reason.CANCELLED_BY_ADMIN
        )
        self._finish(order, CANCELLED, reason, now)
        events.append(_new(OrderCancelled, (state.symbol, state.sequence, now, order)))
        self._emit_quote_if_changed(state, events, now)
        return events

    def _validate(self, order: Order, state: SymbolState) -> Reason:
        if (
            order.side not in VALID_SIDES
            or order.type not in VALID_TYPES
            or order.time_in_force not in VALID_TIME_IN_FORCE
        ):
            return Reason.INVALID_ORDER
        quantity = order.quantity
        if quantity <= 0 or quantity > MAX_ORDER_QUANTITY or quantity % state.lot_size:
            return Reason.INVALID_ORDER
        if order.type == LIMIT:
            if order.price <= 0:
                return Reason.INVALID_ORDER
        elif order.time_in_force in RESTING_TIME_IN_FORCE:
            return Reason.INVALID_ORDER
        if not self.market_open:
            return Reason.MARKET_CLOSED
        if state.halted:
            return Reason.SYMBOL_HALTED
        return Reason.NONE

    def _reserve(self, order: Order, state: SymbolState, account: Account | None) -> Reason:
        """Check the account can back the order and hold cash (BUY) or position (SELL) for it."""
        if account is None:
            return Reason.UNKNOWN_USER
        max_open = self.max_open_orders
        if max_open and self.open_order_counts.get(order.user_id, 0) >= max_open:
            return Reason.OPEN_ORDER_LIMIT
        if order.side == BUY:
            if order.type == LIMIT:
                needed = order.price * order.quantity * state.tick_cash
            else:
                needed = self._market_buy_cost(order, state)
            if needed > account.cash - account.reserved_cash:
                return Reason.INSUFFICIENT_CASH
            account.reserved_cash += needed
            order.reserved_cash = needed
        else:
            position = account.position(order.symbol)
            if position.quantity - position.reserved + self.short_limit < order.quantity:
                return Reason.INSUFFICIENT_POSITION
            position.reserved += order.quantity
        return Reason.NONE

    def _market_buy_cost(self, order: Order, state: SymbolState) -> int:
        """Cash a MARKET BUY needs for what the book can give it now (own orders skipped)."""
        wanted = order.quantity
        cost = 0
        for level in state.book.asks.iter_levels():
            for resting in level.orders.values():
                if resting.user_id == order.user_id:
                    continue
                taken = min(wanted, resting.remaining)
                cost += taken * level.price
                wanted -= taken
                if not wanted:
                    return cost * state.tick_cash
        return cost * state.tick_cash

    def _can_fill_whole(self, order: Order, state: SymbolState) -> bool:
        """FOK test: is there enough liquidity within the limit, not counting own orders?"""
        wanted = order.quantity
        is_buy = order.side == BUY
        limit = order.price if order.type == LIMIT else 0
        user_id = order.user_id
        book_side = state.book.asks if is_buy else state.book.bids
        for level in book_side.iter_levels():
            if limit and (level.price > limit if is_buy else level.price < limit):
                return False
            if user_id:
                for resting in level.orders.values():
                    if resting.user_id != user_id:
                        wanted -= resting.remaining
                        if wanted <= 0:
                            return True
            else:
                wanted -= level.quantity
                if wanted <= 0:
                    return True
        return False

    def _match(self, order: Order, state: SymbolState, events: list[Event], now: int) -> None:
        """Trade `order` against the opposite side, best price first, oldest first."""
        is_buy = order.side == BUY
        book_side = state.book.asks if is_buy else state.book.bids
        levels = book_side.levels
        sign = book_side.sign
        limit = order.price
        has_limit = order.type == LIMIT
        user_id = order.user_id
        symbol = state.symbol
        open_orders = self.open_orders
        accounts = self.accounts
        append = events.append
        resting_side = SELL if is_buy else BUY
        while order.remaining and book_side.best_key is not None:
            price = book_side.best_key * sign
            if has_limit and (price > limit if is_buy else price < limit):
                break
            level = levels[price]
            resting_orders = level.orders
            while order.remaining and resting_orders:
                resting = next(iter(resting_orders.values()))
                if user_id and resting.user_id == user_id:
                    self._remove_resting(state, book_side, level, resting, events, now)
                    self._finish(resting, CANCELLED, Reason.SELF_TRADE, now)
                    append(_new(OrderCancelled, (symbol, state.sequence, now, resting)))
                    continue
                quantity = (
                    order.remaining if order.remaining < resting.remaining else resting.remaining
                )
                state.trade_count += 1
                trade_id = f"{symbol}-{state.trade_count}"
                if order.user_id or resting.user_id:
                    self._settle(order, resting, state, price, quantity)

                resting.remaining -= quantity
                resting.filled_quantity += quantity
                resting.filled_notional += price * quantity
                resting.updated_at = now
                level.quantity -= quantity
                if resting.remaining:
                    resting.status = PARTIALLY_FILLED
                else:
                    resting.status = FILLED
                    del resting_orders[resting.order_id]
                    if not resting_orders:
                        book_side.remove_level(level)
                    del open_orders[resting.order_id]
                    if resting.user_id:
                        self._release(resting, accounts.get(resting.user_id))

                order.remaining -= quantity
                order.filled_quantity += quantity
                order.filled_notional += price * quantity
                order.updated_at = now
                order.status = PARTIALLY_FILLED if order.remaining else FILLED

                if is_buy:
                    buy, sell = order, resting
                else:
                    buy, sell = resting, order
                sequence = state.sequence
                append(
                    _new(
                        TradeExecuted,
                        (
                            symbol,
                            sequence + 1,
                            now,
                            trade_id,
                            price,
                            quantity,
                            order.side,
                            buy.order_id,
                            sell.order_id,
                            buy.user_id,
                            sell.user_id,
                        ),
                    )
                )
                append(
                    _new(
                        OrderFilled,
                        (
                            symbol,
                            sequence + 1,
                            now,
                            resting,
                            trade_id,
                            price,
                            quantity,
                            resting.filled_quantity,
                            resting.filled_notional,
                            resting.status,
                        ),
                    )
                )
                append(
                    _new(
                        OrderFilled,
                        (
                            symbol,
                            sequence + 1,
                            now,
                            order,
                            trade_id,
                            price,
                            quantity,
                            order.filled_quantity,
                            order.filled_notional,
                            order.status,
                        ),
                    )
                )
                append(
                    _new(
                        BookLevelChanged,
                        (
                            symbol,
                            sequence + 2,
                            now,
                            resting_side,
                            price,
                            level.quantity,
                            len(resting_orders),
                        ),
                    )
                )
                state.sequence = sequence + 2
                self._record_trade(state, price, quantity)
        if not order.remaining:
            del open_orders[order.order_id]
            if user_id:
                self._release(order, accounts.get(user_id))

    def _settle(
        self, order: Order, resting: Order, state: SymbolState, price: int, quantity: int
    ) -> None:
        """Move cash and positions of both parties for one execution."""
        notional = price * quantity * state.tick_cash
        currency_price = price * state.tick_size_value
        for party in (order, resting):
            account = self.accounts.get(party.user_id) if party.user_id else None
            if account is None:
                continue
            position = account.position(state.symbol)
            if party.side == BUY:
                account.cash -= notional
                if party.type == LIMIT:
                    released = party.price * quantity * state.tick_cash
                else:
                    released = notional
                party.reserved_cash -= released
                account.reserved_cash -= released
                position.apply_fill(quantity, currency_price)
            else:
                account.cash += notional
                position.reserved -= quantity
                position.apply_fill(-quantity, currency_price)

    def _record_trade(self, state: SymbolState, price: int, quantity: int) -> None:
        state.last = price
        state.last_quantity = quantity
        state.volume += quantity
        if not state.open:
            state.open = state.high = state.low = price
        elif price > state.high:
            state.high = price
        elif price < state.low:
            state.low = price

    def _remove_resting(
        self,
        state: SymbolState,
        book_side: BookSide,
        level: PriceLevel,
        order: Order,
        events: list[Event],
        now: int,
    ) -> None:
        """Take a resting order off its level (not a fill) and publish the level's new state."""
        del level.orders[order.order_id]
        level.quantity -= order.remaining
        if not level.orders:
            book_side.remove_level(level)
        state.sequence += 1
        events.append(
            _new(
                BookLevelChanged,
                (
                    state.symbol,
                    state.sequence,
                    now,
                    book_side.side,
                    level.price,
                    level.quantity,
                    len(level.orders),
                ),
            )
        )

    def _finish(self, order: Order, status: OrderStatus, reason: Reason, now: int) -> None:
        """Close an order that did not fill completely: release what it still holds."""
        order.status = status
        order.reason = reason
        order.updated_at = now
        if status == REJECTED:
            return
        self.open_orders.pop(order.order_id, None)
        if order.user_id:
            self._release(order, self.accounts.get(order.user_id))

    def _release(self, order: Order, account: Account | None) -> None:
        """Give back the cash or position an order no longer needs, and count it closed."""
        self.open_order_counts[order.user_id] -= 1
        if account is None:
            return
        if order.side == BUY:
            account.reserved_cash -= order.reserved_cash
            order.reserved_cash = 0
        else:
            account.position(order.symbol).reserved -= order.remaining

    def refresh_last_quote(self, state: SymbolState) -> tuple[int, int, int, int, int]:
        """Recompute the symbol's top of book; returns (bid, bid_size, ask, ask_size, trades)."""
        bids = state.book.bids
        asks = state.book.asks
        if bids.best_key is None:
            bid = bid_size = 0
        else:
            bid = -bids.best_key
            bid_size = bids.levels[bid].quantity
        if asks.best_key is None:
            ask = ask_size = 0
        else:
            ask = asks.best_key
            ask_size = asks.levels[ask].quantity
        state.last_quote = (bid, bid_size, ask, ask_size, state.trade_count)
        return state.last_quote

    def _emit_quote_if_changed(
        self, state: SymbolState, events: list[Event], now: int, force: bool = False
    ) -> None:
        previous = state.last_quote
        bid, bid_size, ask, ask_size, _ = quote = self.refresh_last_quote(state)
        if quote == previous and not force:
            return
        state.sequence += 1
        events.append(
            _new(
                QuoteChanged,
                (
                    state.symbol,
                    state.sequence,
                    now,
                    bid,
                    bid_size,
                    ask,
                    ask_size,
                    state.last,
                    state.last_quantity,
                    state.volume,
                    state.open,
                    state.high,
                    state.low,
                ),
            )
        )
