"""Random command sequences into the engine and into the reference matcher, compared step by step.

Hypothesis drives orders of every type, time in force and side over two symbols (one with a tick of
0.05 and a lot of 5), from funded, poor and unknown users and from user-less flows, at prices a few
ticks apart so they cross often; cancels of known and unknown orders; close/open of the market;
halt/resume of one symbol or all. After every step the engine must agree with
tests/unit/reference_matcher.py (fills, every order's status, reason and filled quantity, both
books, every account) and keep its invariants (uncrossed, consistent books; conserved cash and
positions; reservations equal to what the open orders need; contiguous public sequences; a quote
that tells the truth).

MOCKEX_STATEFUL_EXAMPLES sets the number of examples (default 500, the CI minimum).
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from engine_svc.engine import MatchingEngine
from engine_svc.events import (
    BookLevelChanged,
    CancelRejected,
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
from engine_svc.orders import OrderType, Reason, Side, TimeInForce
from tests.unit.reference_matcher import ReferenceMatcher

pytestmark = pytest.mark.slow

MAX_EXAMPLES = int(os.environ.get("MOCKEX_STATEFUL_EXAMPLES", "500"))
STEP_COUNT = int(os.environ.get("MOCKEX_STATEFUL_STEPS", "100"))

# symbol: (tick size, cash units per tick, lot size, middle price in ticks)
SYMBOLS = {"ACME": ("0.01", 100, 1, 100), "BETA": ("0.05", 500, 5, 20)}
# user: (cash units, starting positions). bob holds nothing; dan can afford only a few units.
ACCOUNTS = {
    "alice": (3_000_000, {"ACME": 30, "BETA": 40}),
    "bob": (120_000, {}),
    "carol": (600_000, {"ACME": 10, "BETA": 25}),
    "dan": (30_000, {"ACME": 6, "BETA": 10}),
}
# "" is a user-less (benchmark) flow; "ghost", a user without an account, only in place_anything.
TRADERS = ["alice", "bob", "carol", "dan", ""]

symbols = st.sampled_from(list(SYMBOLS))
traders = st.sampled_from(TRADERS)
sides = st.sampled_from(list(Side))
offsets = st.integers(-2, 2)  # price = middle + offset ticks: a narrow band, lots of crossing
lots = st.integers(1, 4)

PUBLIC_EVENTS = (SymbolAdded, BookLevelChanged, TradeExecuted, QuoteChanged)
PRIVATE_EVENTS = (
    OrderAccepted, OrderRejected, OrderFilled, OrderCancelled, OrderExpired, MarketStateChanged
)


def fills_of(events) -> list[tuple[int, int, str, str]]:
    return [
        (e.price, e.quantity, e.buy_order_id, e.sell_order_id)
        for e in events
        if isinstance(e, TradeExecuted)
    ]


class EngineVsReference(RuleBasedStateMachine):
    orders = Bundle("orders")

    @initialize(short_limit=st.sampled_from([0, 0, 6]), max_open=st.sampled_from([0, 0, 2]))
    def set_up(self, short_limit: int, max_open: int) -> None:
        self.engine = MatchingEngine(short_limit=short_limit, max_open_orders=max_open)
        self.ref = ReferenceMatcher(short_limit=short_limit, max_open_orders=max_open)
        self.now = 0
        self.next_id = 0
        self.last_sequence: dict[str, int] = {}
        self.last_quote: dict[str, QuoteChanged] = {}
        self.engine_orders = {}  # order id -> the engine's Order
        for symbol, (tick_size, _, lot_size, _) in SYMBOLS.items():
            self.record(self.engine.add_symbol(symbol, self.tick(), tick_size, lot_size))
            self.ref.add_symbol(symbol, tick_size, lot_size)
        for user, (cash, positions) in ACCOUNTS.items():
            self.engine.create_account(user, cash, positions)
            self.ref.create_account(user, cash, positions)
        # Trading between accounts conserves cash and positions; a trade with a user-less flow
        # moves them in or out of the accounts, and these running totals say by how much.
        self.expected_cash = sum(cash for cash, _ in ACCOUNTS.values())
        self.expected_positions = Counter()
        for _, positions in ACCOUNTS.values():
            self.expected_positions.update(positions)

    # ---- plumbing ---------------------------------------------------------------------------

    def tick(self) -> int:
        self.now += 1
        return self.now

    def record(self, events: list) -> None:
        """Check the sequences of a command's events and keep track of quotes and outside flows.

        Public market events (book, trade, quote, market state, symbol added) take the symbol's
        next sequence; private order events carry the current one; replies that belong to no
        symbol's stream (CancelRejected, an unknown symbol's rejection) carry 0.
        """
        for event in events:
            if event.sequence == 0:
                assert isinstance(event, CancelRejected) or (
                    isinstance(event, OrderRejected) and event.order.reason == Reason.UNKNOWN_SYMBOL
                ), event
                continue
            current = self.last_sequence.get(event.symbol, 0)
            if isinstance(event, PUBLIC_EVENTS):
                assert event.sequence == current + 1, (event, current)
                self.last_sequence[event.symbol] = event.sequence
            else:
                assert isinstance(event, PRIVATE_EVENTS), event
                assert event.sequence == current, (event, current)
            if isinstance(event, QuoteChanged):
                self.last_quote[event.symbol] = event
            elif isinstance(event, TradeExecuted) and bool(event.buyer_id) != bool(event.seller_id):
                notional = event.price * event.quantity * SYMBOLS[event.symbol][1]
                sign = 1 if event.buyer_id else -1  # an account bought from outside, or sold
                self.expected_cash -= sign * notional
                self.expected_positions[event.symbol] += sign * event.quantity

    def place(self, user, symbol, side, type_, tif, price, quantity) -> str:
        self.next_id += 1
        order_id = f"o{self.next_id}"
        events = self.engine.place_order(
            order_id, user, symbol, side, type_, tif, price, quantity, self.tick()
        )
        self.record(events)
        first = events[0]
        assert isinstance(first, OrderAccepted | OrderRejected) and first.order.order_id == order_id
        self.engine_orders[order_id] = first.order
        ref_fills = self.ref.place(order_id, user, symbol, side, type_, tif, price, quantity)
        assert fills_of(events) == [
            (f.price, f.quantity, f.buy_order_id, f.sell_order_id) for f in ref_fills
        ]
        return order_id

    # ---- commands ---------------------------------------------------------------------------
    # Hypothesis picks among the enabled rules evenly, so the placing rules outnumber the rest
    # and a closed market or a halted symbol comes back soon (see back_to_trading).

    @rule(
        target=orders,
        user=traders,
        symbol=symbols,
        side=sides,
        tif=st.sampled_from(list(TimeInForce)),
        offset=offsets,
        lot_count=lots,
    )
    def place_limit(self, user, symbol, side, tif, offset, lot_count):
        _, _, lot_size, middle = SYMBOLS[symbol]
        return self.place(
            user, symbol, side, OrderType.LIMIT, tif, middle + offset, lot_count * lot_size
        )

    @rule(
        target=orders,
        user=traders,
        symbol=symbols,
        side=sides,
        tif=st.sampled_from([TimeInForce.GFD, TimeInForce.GTC]),
        offset=offsets,
        lot_count=lots,
    )
    def place_limit_to_rest(self, user, symbol, side, tif, offset, lot_count):
        _, _, lot_size, middle = SYMBOLS[symbol]
        return self.place(
            user, symbol, side, OrderType.LIMIT, tif, middle + offset, lot_count * lot_size
        )

    @rule(
        target=orders,
        user=traders,
        symbol=symbols,
        side=sides,
        tif=st.sampled_from([TimeInForce.IOC, TimeInForce.FOK]),
        lot_count=lots,
    )
    def place_market(self, user, symbol, side, tif, lot_count):
        lot_size = SYMBOLS[symbol][2]
        return self.place(user, symbol, side, OrderType.MARKET, tif, 0, lot_count * lot_size)

    @rule(
        target=orders,
        user=st.sampled_from([*TRADERS, "ghost"]),
        symbol=st.sampled_from([*SYMBOLS, *SYMBOLS, "NOPE"]),
        side=st.sampled_from([*Side, 0]),
        type_=st.sampled_from(list(OrderType)),
        tif=st.sampled_from(list(TimeInForce)),
        price=st.sampled_from([0, -1, 19, 20, 21, 99, 100, 101]),
        quantity=st.sampled_from([0, -1, 1, 3, 5, 10, 1_000_001]),
    )
    def place_anything(self, user, symbol, side, type_, tif, price, quantity):
        """Any combination, invalid ones included: MARKET GFD, price 0, off-lot quantities..."""
        return self.place(user, symbol, side, type_, tif, price, quantity)

    @rule(
        order_id=orders,
        how=st.sampled_from(["by owner", "by owner", "by admin", "by another user", "unknown id"]),
        other=st.sampled_from(TRADERS),
    )
    def cancel(self, order_id, how, other):
        user, is_admin = self.ref.orders[order_id].user, False
        if how == "by admin":
            user, is_admin = "ops", True
        elif how == "by another user":
            user = other  # may turn out to be the owner after all
        elif how == "unknown id":
            order_id = "never-placed"
        events = self.engine.cancel_order(order_id, user, self.tick(), is_admin=is_admin)
        self.record(events)
        expected = self.ref.cancel(order_id, user, is_admin)
        if isinstance(events[0], CancelRejected):
            assert len(events) == 1
            assert events[0].reason == expected
        else:
            cancelled = [e for e in events if isinstance(e, OrderCancelled)]
            assert [e.order.order_id for e in cancelled] == [order_id]
            assert cancelled[0].order.reason == expected

    @rule(command=st.sampled_from(["close", "halt ACME", "halt BETA", "halt", "resume", "open"]))
    def market_command(self, command):
        """Close the day, halt one symbol or all; "resume" and "open" often change nothing."""
        name, _, symbol = command.partition(" ")
        self.run_market_command(name, symbol)

    @precondition(
        lambda self: not self.engine.market_open
        or any(state.halted for state in self.engine.symbols.values())
    )
    @rule(symbol=st.sampled_from([*SYMBOLS, ""]))
    def back_to_trading(self, symbol):
        """Open the market if it is closed, else resume the symbol (or all)."""
        self.run_market_command("resume" if self.engine.market_open else "open", symbol)

    def run_market_command(self, name, symbol):
        now = self.tick()
        if name == "close":
            self.record(self.engine.close_market(now))
            self.ref.close_market()
        elif name == "open":
            self.record(self.engine.open_market(now))
            self.ref.open_market()
        elif name == "halt":
            self.record(self.engine.halt(now, symbol))
            self.ref.halt(symbol)
        else:
            self.record(self.engine.resume(now, symbol))
            self.ref.resume(symbol)

    # ---- agreement with the reference ---------------------------------------------------------

    @invariant()
    def orders_agree(self):
        for order_id, order in self.engine_orders.items():
            ref = self.ref.orders[order_id]
            assert (order.status, order.reason, order.filled_quantity, order.remaining) == (
                ref.status, ref.reason, ref.filled, ref.remaining
            ), (order, ref)

    @invariant()
    def books_agree(self):
        for symbol, state in self.engine.symbols.items():
            for book_side in (state.book.bids, state.book.asks):
                engine_levels = [
                    (
                        level.price,
                        list(level.orders),
                        [o.remaining for o in level.orders.values()],
                    )
                    for level in book_side.iter_levels()
                ]
                assert engine_levels == self.ref.book(symbol, book_side.side), (
                    symbol, book_side.side
                )

    @invariant()
    def accounts_agree(self):
        for user, account in self.engine.accounts.items():
            assert account.cash == self.ref.accounts[user].cash, user
            assert account.reserved_cash == self.ref.reserved_cash(user), user
            for symbol in SYMBOLS:
                position = account.positions.get(symbol)
                quantity, reserved = (position.quantity, position.reserved) if position else (0, 0)
                assert quantity == self.ref.position(user, symbol), (user, symbol)
                assert reserved == self.ref.reserved_position(user, symbol), (user, symbol)

    # ---- the engine's own invariants ------------------------------------------------------------

    @invariant()
    def books_are_consistent(self):
        resting_ids = set()
        for state in self.engine.symbols.values():
            book = state.book
            assert state.sequence == self.last_sequence[state.symbol], state.symbol
            best_bid, best_ask = book.best_bid(), book.best_ask()
            assert best_bid is None or best_ask is None or best_bid < best_ask, state.symbol
            for book_side in (book.bids, book.asks):
                assert len(book_side.keys) == len(book_side.levels)
                for level in book_side.iter_levels():
                    assert level.orders, f"empty level {level.price}"
                    assert level.quantity == sum(o.remaining for o in level.orders.values())
                    for order in level.orders.values():
                        assert not order.is_finished and order.remaining > 0, order
                        assert (order.price, order.side, order.symbol) == (
                            level.price, book_side.side, state.symbol
                        )
                        assert order.type == OrderType.LIMIT
                        assert order.time_in_force in (TimeInForce.GFD, TimeInForce.GTC)
                        resting_ids.add(order.order_id)
        assert set(self.engine.open_orders) == resting_ids

    @invariant()
    def cash_and_positions_are_conserved(self):
        accounts = self.engine.accounts.values()
        assert sum(a.cash for a in accounts) == self.expected_cash
        for symbol in SYMBOLS:
            total = sum(a.positions[symbol].quantity for a in accounts if symbol in a.positions)
            assert total == self.expected_positions[symbol], symbol

    @invariant()
    def reservations_match_open_orders(self):
        open_orders = list(self.engine.open_orders.values())
        for user, account in self.engine.accounts.items():
            mine = [o for o in open_orders if o.user_id == user]
            buys = [o for o in mine if o.side == Side.BUY]
            for order in buys:
                assert order.reserved_cash == (
                    order.price * order.remaining * SYMBOLS[order.symbol][1]
                ), order
            assert account.reserved_cash == sum(o.reserved_cash for o in buys), user
            assert 0 <= account.reserved_cash <= account.cash, user
            for symbol, position in account.positions.items():
                sells = sum(o.remaining for o in mine if o.side == Side.SELL and o.symbol == symbol)
                assert position.reserved == sells, (user, symbol)
                assert position.quantity - position.reserved >= -self.engine.short_limit
            assert self.engine.open_order_counts.get(user, 0) == len(mine), user
        for order in self.engine_orders.values():
            if order.is_finished:
                assert order.reserved_cash == 0, order

    @invariant()
    def last_quote_tells_the_truth(self):
        for symbol, state in self.engine.symbols.items():
            bids, asks = state.book.bids.depth(1), state.book.asks.depth(1)
            top = (
                bids[0][0] if bids else 0,
                bids[0][1] if bids else 0,
                asks[0][0] if asks else 0,
                asks[0][1] if asks else 0,
            )
            quote = self.last_quote.get(symbol)
            if quote is None:
                assert top == (0, 0, 0, 0)
                continue
            assert (quote.bid, quote.bid_size, quote.ask, quote.ask_size) == top, symbol
            day = self.ref.symbols[symbol]
            assert (quote.last, quote.volume, quote.open, quote.high, quote.low) == (
                day.last, day.volume, day.open, day.high, day.low
            ), symbol


EngineVsReference.TestCase.settings = settings(
    max_examples=MAX_EXAMPLES,
    stateful_step_count=STEP_COUNT,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestEngineVsReference = EngineVsReference.TestCase
