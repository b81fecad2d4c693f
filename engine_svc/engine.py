"""The matching engine: commands and times in, events out. No I/O, no clock, no randomness.

Continuous price-time priority per symbol; a trade executes at the resting order's price. Accounts
are checked (risk.py) and moved (settlement.py) for orders that carry a user id; user-less orders
(benchmark flows) skip accounts and self-trade prevention. Business-rule violations become
REJECTED orders with a reason, and commands the engine cannot carry out become CommandRefused
events: rejections are data, never exceptions.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from engine_svc import risk
from engine_svc.accounts import CASH_UNITS_PER_CURRENCY, Account
from engine_svc.book import BookSide, OrderBook
from engine_svc.events import (
    AccountCreated,
    BookLevelChanged,
    CancelRejected,
    CashAdjusted,
    CommandRefused,
    Event,
    Grant,
    MarketStateChanged,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    QuoteChanged,
    SettingsChanged,
    SymbolAdded,
    TradeExecuted,
    TradingDayClosed,
    TradingDayOpened,
    TradingHalted,
    TradingResumed,
)
from engine_svc.orders import (
    MAX_ORDER_QUANTITY,
    Order,
    OrderStatus,
    OrderTerms,
    OrderType,
    Reason,
    Refusal,
    Side,
    SymbolStatus,
    TimeInForce,
)
from engine_svc.rules import ExchangeSettings
from engine_svc.settlement import settle

BUY = Side.BUY
SELL = Side.SELL
LIMIT = OrderType.LIMIT
MARKET = OrderType.MARKET
PARTIALLY_FILLED = OrderStatus.PARTIALLY_FILLED
FILLED = OrderStatus.FILLED
CANCELLED = OrderStatus.CANCELLED
EXPIRED = OrderStatus.EXPIRED
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
        "reference_price",
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

    def __init__(
        self, symbol: str, tick_size: str, lot_size: int, reference_price: int = 0
    ) -> None:
        self.symbol = symbol
        self.tick_size = tick_size
        self.tick_size_value = float(tick_size)
        self.tick_cash = int(Decimal(tick_size) * CASH_UNITS_PER_CURRENCY)
        self.lot_size = lot_size
        self.reference_price = reference_price
        """Ticks granted positions are valued at when no cost basis is given; 0 for none."""
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
        raise ValueError(f"tickSize {tick_size!r} is not a number") from exc
    if not value.is_finite() or value <= 0:
        raise ValueError(f"tickSize {tick_size!r} must be positive")
    if (value * CASH_UNITS_PER_CURRENCY) % 1:
        raise ValueError(f"tickSize {tick_size!r} must be a multiple of 0.0001")
    return value


def _refused(
    reason: Refusal, message: str, now: int, user_id: str = "", order_id: str = ""
) -> CommandRefused:
    return CommandRefused("", 0, now, reason, message, user_id, order_id)


class MatchingEngine:
    """All symbols and accounts of one exchange. The single writer: call it from one thread."""

    def __init__(self, settings: ExchangeSettings | None = None, market_open: bool = True) -> None:
        self.settings = settings or ExchangeSettings()
        self.market_open = market_open
        self.symbols: dict[str, SymbolState] = {}
        self.accounts: dict[str, Account] = {}
        self.open_orders: dict[str, Order] = {}
        self.open_order_counts: dict[str, int] = {}
        self.client_orders: dict[tuple[str, str], str] = {}
        """(user id, clientOrderId) -> the order it was first given to, for the trading day."""
        self.exchange_sequence = 0

    # ---- admin commands -------------------------------------------------------------------

    def configure(self, settings: ExchangeSettings, now: int) -> list[Event]:
        """Take new settings; they apply to orders from now on (resting orders keep theirs)."""
        previous = self.settings
        if settings == previous:
            return []
        self.settings = settings
        return [SettingsChanged("", 0, now, self._next_exchange_sequence(), settings, previous)]

    def add_symbol(
        self,
        symbol: str,
        now: int,
        tick_size: str = "0.01",
        lot_size: int = 1,
        reference_price: int = 0,
    ) -> list[Event]:
        if symbol in self.symbols:
            return [_refused(Refusal.SYMBOL_EXISTS, f"symbol {symbol} is already listed", now)]
        if lot_size < 1:
            return [_refused(Refusal.INVALID_ARGUMENT, "lotSize must be at least 1", now)]
        if reference_price < 0:
            message = "referencePrice must not be negative"
            return [_refused(Refusal.INVALID_ARGUMENT, message, now)]
        try:
            tick_size = str(parse_tick_size(tick_size))
        except ValueError as exc:
            return [_refused(Refusal.INVALID_ARGUMENT, str(exc), now)]
        state = self.symbols[symbol] = SymbolState(symbol, tick_size, lot_size, reference_price)
        state.sequence = 1
        return [
            SymbolAdded(
                symbol,
                1,
                now,
                self._next_exchange_sequence(),
                tick_size,
                lot_size,
                reference_price,
            )
        ]

    def create_account(
        self,
        user_id: str,
        cash: int,
        now: int,
        grants: tuple[Grant, ...] = (),
        admin: bool = False,
        api_key_sha256: str = "",
    ) -> list[Event]:
        """Open an account with `cash` (cash units) and starting positions at a cost basis.

        A grant's price of 0 takes the symbol's reference price (0 if it has none).
        """
        if not user_id:
            return [_refused(Refusal.INVALID_ARGUMENT, "userId must not be empty", now)]
        if cash < 0:
            return [_refused(Refusal.INVALID_ARGUMENT, "cash must not be negative", now, user_id)]
        if user_id in self.accounts:
            message = f"userId {user_id} already exists"
            return [_refused(Refusal.ACCOUNT_EXISTS, message, now, user_id)]
        valued: list[Grant] = []
        for grant in grants:
            state = self.symbols.get(grant.symbol)
            if state is None:
                message = f"positions: symbol {grant.symbol} is not listed"
                return [_refused(Refusal.UNKNOWN_SYMBOL, message, now, user_id)]
            if grant.quantity < 0 or grant.price < 0:
                message = f"positions: {grant.symbol} quantity and cost basis must not be negative"
                return [_refused(Refusal.INVALID_ARGUMENT, message, now, user_id)]
            valued.append(Grant(grant.symbol, grant.quantity, grant.price or state.reference_price))
        account = Account(user_id, cash, admin=admin, api_key_sha256=api_key_sha256)
        for grant in valued:
            cost = grant.quantity * grant.price * self.symbols[grant.symbol].tick_cash
            position = account.position(grant.symbol)
            position.quantity += grant.quantity
            position.cost += cost
            account.starting_value += cost
        self.accounts[user_id] = account
        return [
            AccountCreated(
                "",
                0,
                now,
                self._next_exchange_sequence(),
                user_id,
                admin,
                api_key_sha256,
                cash,
                tuple(valued),
                account.starting_value,
            )
        ]

    def adjust_cash(self, user_id: str, amount: int, now: int) -> list[Event]:
        """Give (amount > 0) or take cash; the starting value moves with it, the P&L does not."""
        account = self.accounts.get(user_id)
        if account is None:
            message = f"userId {user_id} has no account"
            return [_refused(Refusal.UNKNOWN_ACCOUNT, message, now, user_id)]
        if account.cash + amount < account.reserved_cash:
            units = CASH_UNITS_PER_CURRENCY
            message = (
                f"amount would leave cash of {(account.cash + amount) / units:g}, below the "
                f"{account.reserved_cash / units:g} the account's open orders hold"
            )
            return [_refused(Refusal.INVALID_ARGUMENT, message, now, user_id)]
        account.cash += amount
        account.starting_value += amount
        return [CashAdjusted("", 0, now, user_id, amount, account.cash, account.starting_value)]

    def symbol_status(self, state: SymbolState) -> SymbolStatus:
        if not self.market_open:
            return SymbolStatus.CLOSED
        return SymbolStatus.HALTED if state.halted else SymbolStatus.OPEN

    def open_market(self, now: int) -> list[Event]:
        """Start a trading day: the day's statistics and clientOrderIds restart."""
        events: list[Event] = []
        if self.market_open:
            return events
        self.market_open = True
        self.client_orders.clear()  # those tried while closed were refused, not today's orders
        events.append(TradingDayOpened("", 0, now, self._next_exchange_sequence()))
        for state in self.symbols.values():
            state.open = state.high = state.low = state.volume = 0
            self._emit_market_state(state, events, now)
            self._emit_quote_if_changed(state, events, now, force=True)
        return events

    def close_market(self, now: int) -> list[Event]:
        """End the trading day: every resting GFD order expires (GTC orders stay), and the day's
        clientOrderIds are forgotten."""
        events: list[Event] = []
        if not self.market_open:
            return events
        self.market_open = False
        self.client_orders.clear()
        for state in self.symbols.values():
            for book_side in (state.book.bids, state.book.asks):
                for order in list(book_side.iter_orders()):
                    if order.time_in_force == GFD:
                        self._take_off_book(state, book_side, order, events, now)
                        self._finish(state, order, EXPIRED, Reason.DAY_CLOSE, now, events)
            self._emit_market_state(state, events, now)
            self._emit_quote_if_changed(state, events, now)
        events.append(TradingDayClosed("", 0, now, self._next_exchange_sequence()))
        return events

    def halt(self, now: int, symbol: str = "") -> list[Event]:
        return self._set_halted(True, symbol, now)

    def resume(self, now: int, symbol: str = "") -> list[Event]:
        return self._set_halted(False, symbol, now)

    def _set_halted(self, halted: bool, symbol: str, now: int) -> list[Event]:
        if symbol and symbol not in self.symbols:
            message = f"symbol {symbol} is not listed"
            return [_refused(Refusal.UNKNOWN_SYMBOL, message, now)]
        states = [self.symbols[symbol]] if symbol else list(self.symbols.values())
        events: list[Event] = []
        for state in states:
            if state.halted != halted:
                state.halted = halted
                self._emit_market_state(state, events, now)
        if events:
            kind = TradingHalted if halted else TradingResumed
            events.append(kind(symbol, 0, now, self._next_exchange_sequence()))
        return events

    def _emit_market_state(self, state: SymbolState, events: list[Event], now: int) -> None:
        """Market state goes to the exchange-events channel, not market data, so like order
        events it carries the symbol's sequence without increasing it."""
        events.append(
            _new(MarketStateChanged, (state.symbol, state.sequence, now, self.symbol_status(state)))
        )

    def _next_exchange_sequence(self) -> int:
        self.exchange_sequence += 1
        return self.exchange_sequence

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
        """Accept or reject a new order, match it, and rest or expire what is left.

        A clientOrderId the user already sent today is refused, naming the first order.
        """
        if client_order_id and user_id:
            key = (user_id, client_order_id)
            first = self.client_orders.get(key)
            if first is not None:
                message = f"clientOrderId {client_order_id!r} was already used by order {first}"
                return [_refused(Refusal.DUPLICATE_CLIENT_ORDER_ID, message, now, user_id, first)]
            self.client_orders[key] = order_id
        if type == MARKET:
            price = 0
        terms = _new(
            OrderTerms,
            (
                order_id,
                user_id,
                symbol,
                side,
                type,
                time_in_force,
                price,
                quantity,
                client_order_id,
                now,
            ),
        )
        order = Order(terms)
        events: list[Event] = []
        state = self.symbols.get(symbol)
        if state is None:
            events.append(_new(OrderRejected, (symbol, 0, now, terms, Reason.UNKNOWN_SYMBOL)))
            return events

        reason = self._validate(order, state)
        if not reason and user_id:
            reason = risk.reserve(
                order,
                self.accounts.get(user_id),
                state.book.asks,
                state.tick_cash,
                self.settings,
                self.open_order_counts.get(user_id, 0),
            )
        if reason:
            events.append(_new(OrderRejected, (symbol, state.sequence, now, terms, reason)))
            return events

        self.open_orders[order_id] = order
        if user_id:
            self.open_order_counts[user_id] = self.open_order_counts.get(user_id, 0) + 1
        events.append(_new(OrderAccepted, (symbol, state.sequence, now, terms)))

        if time_in_force == FOK and not self._can_fill_whole(order, state):
            self._finish(state, order, EXPIRED, Reason.FILL_OR_KILL, now, events)
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
                self._finish(state, order, EXPIRED, expiry_reason, now, events)
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
        events: list[Event] = []
        book_side = state.book.bids if order.side == BUY else state.book.asks
        self._take_off_book(state, book_side, order, events, now)
        reason = (
            Reason.CANCELLED_BY_OWNER if order.user_id == user_id else Reason.CANCELLED_BY_ADMIN
        )
        self._finish(state, order, CANCELLED, reason, now, events)
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

    def _can_fill_whole(self, order: Order, state: SymbolState) -> bool:
        """FOK test: is there enough liquidity within the limit, not counting own orders?"""
        wanted = order.quantity
        is_buy = order.side == BUY
        limit = order.price if order.type == LIMIT else 0
        user_id = order.user_id
        for level in state.book.opposite(order.side).iter_levels():
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
        """Trade `order` against the opposite side, best price first, oldest first.

        The engine's one hot loop, kept flat: fills come off the front of a level inline.
        """
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
        terms = order.terms
        while order.remaining and book_side.best_key is not None:
            price = book_side.best_key * sign
            if has_limit and (price > limit if is_buy else price < limit):
                break
            level = levels[price]
            resting_orders = level.orders
            while order.remaining and resting_orders:
                resting = next(iter(resting_orders.values()))
                if user_id and resting.user_id == user_id:
                    self._take_off_book(state, book_side, resting, events, now)
                    self._finish(state, resting, CANCELLED, Reason.SELF_TRADE, now, events)
                    continue
                quantity = (
                    order.remaining if order.remaining < resting.remaining else resting.remaining
                )
                state.trade_count += 1
                trade_id = f"{symbol}-{state.trade_count}"
                if user_id or resting.user_id:
                    settle(accounts, symbol, state.tick_cash, order, resting, price, quantity)

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
                        self._release(resting)

                order.remaining -= quantity
                order.filled_quantity += quantity
                order.filled_notional += price * quantity
                order.status = PARTIALLY_FILLED if order.remaining else FILLED

                if is_buy:
                    buy, sell = order, resting
                else:
                    buy, sell = resting, order
                sequence = state.sequence + 1
                append(
                    _new(
                        TradeExecuted,
                        (
                            symbol,
                            sequence,
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
                            sequence,
                            now,
                            resting.terms,
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
                            sequence,
                            now,
                            terms,
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
                            sequence + 1,
                            now,
                            resting_side,
                            price,
                            level.quantity,
                            len(resting_orders),
                        ),
                    )
                )
                state.sequence = sequence + 1
                self._record_trade(state, price, quantity)
        if order.filled_quantity:
            order.updated_at = now
        if not order.remaining:
            del open_orders[order.order_id]
            if user_id:
                self._release(order)

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

    def _take_off_book(
        self,
        state: SymbolState,
        book_side: BookSide,
        order: Order,
        events: list[Event],
        now: int,
    ) -> None:
        """Take a resting order off the book (not a fill) and publish its level's new state."""
        level = book_side.remove(order)
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

    def _finish(
        self,
        state: SymbolState,
        order: Order,
        status: OrderStatus,
        reason: Reason,
        now: int,
        events: list[Event],
    ) -> None:
        """Close an accepted order that did not fill completely, give back what it holds, and
        emit its OrderCancelled or OrderExpired."""
        order.status = status
        order.reason = reason
        order.updated_at = now
        del self.open_orders[order.order_id]
        if order.user_id:
            self._release(order)
        kind = OrderCancelled if status == CANCELLED else OrderExpired
        events.append(
            _new(
                kind,
                (
                    state.symbol,
                    state.sequence,
                    now,
                    order.terms,
                    reason,
                    order.filled_quantity,
                    order.filled_notional,
                ),
            )
        )

    def _release(self, order: Order) -> None:
        """The order no longer counts as open for its user, nor holds cash or position."""
        self.open_order_counts[order.user_id] -= 1
        risk.release(order, self.accounts.get(order.user_id))

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
