"""Random command sequences into the engine and into the reference matcher, compared step by step.

Hypothesis drives orders of every type, time in force and side over two symbols (one with a tick of
0.05 and a lot of 5), from funded, poor, late and unknown users and from user-less flows, at prices
a few ticks apart so they cross often, some with a clientOrderId; cancels of known and unknown
orders; amends of price and quantity (down, up, crossing, off the lot, below the filled part, by
another user); close/open of the market; halt/resume of one symbol or all; settings changes, cash
adjustments, a late account; disabling and enabling users, cancel-all; minutes of log time
passing, so that scores are sampled. Some examples run under rules version 2 settings: a
position limit, maker and taker fees (a negative maker fee, a rebate, among them) and marks at
the mid of a narrow book. Every command goes through the CommandHandler as the EngineCommand
proto a gateway sends, numbered in one of two gateway sessions (or in none, for the engine's own),
with resends of applied commands and commands lost on the way that arrive late (the ledger's gaps).

After every step the engine must agree with tests/unit/reference_matcher.py: every order event
carries the reference's state of that order at that moment (status, reason, filled quantity and
notional, remaining), so the events are values; trades, the fee of every fill, refusals and
cancel rejections; both books; every account, its cost basis, realized P&L and fees; every score
sampled (equity at the reference's marks, P&L, drawdown and sharpe recomputed from the samples).
It must keep its invariants: uncrossed, consistent books; cash plus the fees collected and
positions conserved; reservations equal to what the open orders need, the fee part included;
positions within the position limit counting open orders; contiguous public and exchange-wide
sequences; a quote that tells the truth; P&L that adds up exactly in integers; a ledger that
knows every applied command and only those. At a random step the
CommandHandler is snapshotted, the snapshot serialized and restored, and from then on the restored
copy gets every command too and must answer with the same events, and end in the same state.

Settings changes may change the fees too (resting orders keep the maker fee they were accepted
at); the position limit stays as the example starts with it.

MOCKEX_STATEFUL_EXAMPLES sets the number of examples (default 500, the CI minimum).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections import Counter
from fractions import Fraction

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
    EXCHANGE_WIDE,
    AccountCreated,
    AmendRejected,
    BookLevelChanged,
    CancelRejected,
    CashAdjusted,
    CommandRefused,
    Grant,
    MarketStateChanged,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    QuoteChanged,
    ScoresSampled,
    SettingsChanged,
    SymbolAdded,
    TradeExecuted,
    TradingDayClosed,
    TradingDayOpened,
    TradingHalted,
    TradingResumed,
    UserDisabled,
    UserEnabled,
)
from engine_svc.orders import (
    FINISHED_STATUSES,
    OrderStatus,
    OrderTerms,
    OrderType,
    Reason,
    Refusal,
    Side,
    TimeInForce,
)
from engine_svc.rules import ExchangeSettings
from engine_svc.scoring import MINUTE_NS
from engine_svc.servicer import CommandHandler
from exchange.internal.v1 import engine_pb2
from tests.unit.reference_matcher import ReferenceMatcher, fee_on

pytestmark = pytest.mark.slow

MAX_EXAMPLES = int(os.environ.get("MOCKEX_STATEFUL_EXAMPLES", "500"))
STEP_COUNT = int(os.environ.get("MOCKEX_STATEFUL_STEPS", "100"))

# symbol: (tick size, cash units per tick, lot size, middle price in ticks = reference price)
SYMBOLS = {"ACME": ("0.01", 100, 1, 100), "BETA": ("0.05", 500, 5, 20)}
# user: (cash units, grants (symbol, quantity, cost basis in ticks; 0 = the reference price)).
# bob holds nothing; dan can afford only a few units.
ACCOUNTS = {
    "alice": (3_000_000, (("ACME", 30, 95), ("BETA", 40, 0))),
    "bob": (120_000, ()),
    "carol": (600_000, (("ACME", 10, 0), ("BETA", 25, 21))),
    "dan": (30_000, (("ACME", 6, 0), ("BETA", 10, 19))),
}
# erin's account is opened during the run (until then she is like "ghost").
LATE_ACCOUNT = ("erin", 200_000, (("ACME", 5, 0), ("BETA", 10, 22)))
# "" is a user-less (benchmark) flow. "ghost", a user without an account, and erin trade only in
# place_anything: most orders come from accounts that exist from the start.
TRADERS = ["alice", "bob", "carol", "dan", ""]
# Who sends what: two gateway processes ("gw-1", "gw-2") share the participants (gw-2 also the
# admin's accounts and cash); the engine itself ("") opens and closes the day, halts, configures.
SESSION_OF = {"alice": "gw-1", "carol": "gw-1", "ghost": "gw-1", "ops": "gw-1"}
ADMIN_SESSION = "gw-2"
GATEWAYS = ("gw-1", "gw-2")

symbols = st.sampled_from(list(SYMBOLS))
traders = st.sampled_from(TRADERS)
sides = st.sampled_from(list(Side))
offsets = st.integers(-2, 2)  # price = middle + offset ticks: a narrow band, lots of crossing
lots = st.integers(1, 4)
client_ids = st.sampled_from(["", "", "", "", "", "", "k1", "k2", "k3", "k4"])

PUBLIC_EVENTS = (SymbolAdded, BookLevelChanged, TradeExecuted, QuoteChanged)
PRIVATE_EVENTS = (
    OrderAccepted,
    OrderAmended,
    OrderRejected,
    OrderFilled,
    OrderCancelled,
    OrderExpired,
    MarketStateChanged,
)
NO_STREAM_EVENTS = (
    CancelRejected,
    AmendRejected,
    CommandRefused,
    CashAdjusted,
    UserDisabled,
    UserEnabled,
)
# (maker, taker) fee rates in hundredths of a basis point: none, small ones that round to 0 or 1
# on most ACME fills, a rebate, rates large enough to matter, a negative taker fee.
FEES = [(0, 0), (0, 0), (-7, 30), (20, 150), (-150, 2_500), (3_000, -20)]
NEW, REJECTED = OrderStatus.NEW, OrderStatus.REJECTED
CANCELLED, EXPIRED = OrderStatus.CANCELLED, OrderStatus.EXPIRED


def observed(event) -> tuple | None:
    """What the event tells a participant, in the reference matcher's terms; None for events the
    reference does not model (book levels, quotes, market states, exchange-wide events)."""
    kind = type(event)
    if kind is TradeExecuted:
        return ("trade", event.price, event.quantity, event.buy_order_id, event.sell_order_id)
    if kind is OrderFilled:
        terms = event.order
        return (
            "order",
            "filled",
            terms.order_id,
            event.status,
            Reason.NONE,
            event.filled_quantity,
            event.filled_notional,
            terms.quantity - event.filled_quantity,
        )
    if kind is OrderAmended:
        terms = event.order
        return (
            "order",
            "amended",
            terms.order_id,
            event.status,
            Reason.NONE,
            event.filled_quantity,
            event.filled_notional,
            terms.quantity - event.filled_quantity,
        )
    if kind is OrderAccepted:
        terms = event.order
        return ("order", "accepted", terms.order_id, NEW, Reason.NONE, 0, 0, terms.quantity)
    if kind is OrderRejected:
        terms = event.order
        return ("order", "rejected", terms.order_id, REJECTED, event.reason, 0, 0, terms.quantity)
    if kind is OrderCancelled or kind is OrderExpired:
        terms = event.order
        return (
            "order",
            "cancelled" if kind is OrderCancelled else "expired",
            terms.order_id,
            CANCELLED if kind is OrderCancelled else EXPIRED,
            event.reason,
            event.filled_quantity,
            event.filled_notional,
            terms.quantity - event.filled_quantity,
        )
    if kind is CommandRefused:
        return ("refused", event.reason, event.order_id)
    if kind is CancelRejected:
        return ("cancel rejected", event.order_id, event.reason)
    if kind is AmendRejected:
        return ("amend rejected", event.order_id, event.reason)
    return None


def grants_to_proto(grants) -> list[engine_pb2.PositionGrant]:
    return [
        engine_pb2.PositionGrant(symbol=symbol, quantity=quantity, price_ticks=price)
        for symbol, quantity, price in grants
    ]


def state_of(handler: CommandHandler) -> tuple:
    """Everything that decides the engine's next events, as plain values."""
    engine = handler.engine
    symbols = []
    for state in engine.symbols.values():
        sides = []
        for book_side in (state.book.bids, state.book.asks):
            sides.append(
                [
                    (
                        order.terms,
                        order.remaining,
                        order.filled_quantity,
                        order.filled_notional,
                        order.status,
                        order.reason,
                        order.updated_at,
                        order.reserved_cash,
                    )
                    for order in book_side.iter_orders()
                ]
            )
            sides.append(book_side.depth())
        symbols.append(
            (
                state.symbol,
                state.tick_size,
                state.tick_cash,
                state.lot_size,
                state.reference_price,
                state.sequence,
                state.halted,
                state.trade_count,
                (state.last, state.last_quantity, state.volume, state.open, state.high, state.low),
                state.last_quote,
                sides,
            )
        )
    accounts = {
        user: (
            account.cash,
            account.reserved_cash,
            account.starting_value,
            account.starting_cash,
            account.grants,
            account.admin,
            account.api_key_sha256,
            account.role,
            account.disabled,
            account.fees_paid,
            {
                symbol: (p.quantity, p.reserved, p.buying, p.cost, p.realized_pnl)
                for symbol, p in account.positions.items()
            },
        )
        for user, account in engine.accounts.items()
    }
    scores = [
        (user, *(getattr(score, name) for name in score.__slots__))
        for user, score in engine.scores.items()
    ]
    competition = tuple(getattr(engine.competition, name) for name in engine.competition.__slots__)
    sessions = {
        session_id: (ledger.applied_through, sorted(ledger.applied_after), ledger.last_applied_ns)
        for session_id, ledger in handler.ledger.sessions.items()
    }
    return (
        engine.settings,
        engine.market_open,
        engine.exchange_sequence,
        engine.fees_collected,
        engine.last_sample_minute,
        scores,
        competition,
        symbols,
        accounts,
        sorted(engine.open_orders),
        {user: count for user, count in engine.open_order_counts.items() if count},
        dict(engine.client_orders),
        sessions,
    )


class EngineVsReference(RuleBasedStateMachine):
    orders = Bundle("orders")

    @initialize(
        short_limit=st.sampled_from([0, 0, 6]),
        max_open=st.sampled_from([0, 0, 2]),
        position_limit=st.sampled_from([0, 0, 0, 4, 12, 35]),
        fees=st.sampled_from(FEES),
        mark_spread=st.sampled_from([0, 0, 2]),
        snapshot_at=st.integers(1, STEP_COUNT),
    )
    def set_up(
        self,
        short_limit: int,
        max_open: int,
        position_limit: int,
        fees: tuple[int, int],
        mark_spread: int,
        snapshot_at: int,
    ) -> None:
        maker_fee, taker_fee = fees
        engine = MatchingEngine(
            settings=ExchangeSettings(
                short_limit=short_limit,
                max_open_orders=max_open,
                position_limit=position_limit,
                maker_fee_centi_bps=maker_fee,
                taker_fee_centi_bps=taker_fee,
                mark_max_spread_ticks=mark_spread,
            ),
            market_open=True,
        )
        self.handler = CommandHandler(engine)
        self.engine = engine
        self.ref = ReferenceMatcher(short_limit, max_open, position_limit, maker_fee, taker_fee)
        self.max_short_limit = short_limit  # positions opened under the largest limit stay
        self.granted: Counter[tuple[str, str]] = Counter()  # (user, symbol) -> granted quantity
        self.last_minute: int | None = None  # the minute of log time of the last command
        self.pending_sample: tuple[ScoresSampled, int] | None = None  # checked after the step
        # user -> (per-minute P&L changes, last sampled P&L, peak, max drawdown)
        self.samples: dict[str, tuple[list[int], int, int, int]] = {}
        self.now = 0
        self.next_id = 0
        self.commands = 0
        self.session_sequences: Counter[str] = Counter()
        self.sent: list[tuple[str, int]] = []
        self.lost: list[tuple[str, int]] = []  # sequences skipped: the ledger's gaps
        self.snapshot_at = snapshot_at
        self.shadow: CommandHandler | None = None
        self.last_sequence: dict[str, int] = {}
        self.exchange_sequence = 0
        self.command_exchange_sequence = 0
        self.last_quote: dict[str, QuoteChanged] = {}
        self.order_states: dict[str, tuple] = {}  # order id -> its latest order event, observed
        self.unsettled: set[str] = set()  # orders open in the reference, or just sent an event
        self.emitted: list[tuple] = []  # (order event, what it said when it was emitted)
        self.seen_open = {}  # the engine's open orders (live Orders) at the last check
        # Trading between accounts conserves cash and positions; a trade with a user-less flow
        # moves them in or out of the accounts, and these running totals say by how much (as do
        # new accounts and cash adjustments).
        self.expected_cash = 0
        self.expected_positions = Counter()
        for symbol, (tick_size, _, lot_size, middle) in SYMBOLS.items():
            add = engine_pb2.AddSymbolCommand(
                symbol=symbol, tick_size=tick_size, lot_size=lot_size, reference_price_ticks=middle
            )
            events = self.apply(self.command("", add_symbol=add))
            assert [type(e) for e in events] == [SymbolAdded]
            self.ref.add_symbol(symbol, tick_size, lot_size, middle)
        for user, (cash, grants) in ACCOUNTS.items():
            self.open_account(user, cash, grants)

    # ---- plumbing ---------------------------------------------------------------------------

    def command(self, session: str, **command) -> engine_pb2.EngineCommand:
        """The next command, numbered in its session."""
        self.now += 1
        message = engine_pb2.EngineCommand(timestamp_ns=self.now, **command)
        if session:
            self.session_sequences[session] += 1
            message.session_id = session
            message.session_sequence = self.session_sequences[session]
        return message

    @staticmethod
    def session_of(user: str) -> str:
        return SESSION_OF.get(user, "gw-2")

    def apply(self, command: engine_pb2.EngineCommand) -> list:
        """Apply a command (to the restored copy too, once there is one) and check its events;
        returns them without the scores sample that may follow them, which is checked here."""
        assert not self.handler.is_applied(command)
        events = self.handler.apply(command)
        if command.session_id:
            self.sent.append((command.session_id, command.session_sequence))
        if self.shadow is not None:
            assert self.shadow.apply(command) == events
        self.record(events)
        events = self.check_sample(command.timestamp_ns, events)
        self.commands += 1
        if self.commands == self.snapshot_at:
            self.snapshot_and_restore()
        return events

    def record(self, events: list) -> None:
        """Check the sequences of a command's events and keep track of quotes and outside flows.

        Public market events (book, trade, quote, symbol added) take the symbol's next sequence;
        private order events and market states carry the current one; replies that belong to no
        symbol's stream (CancelRejected, CommandRefused, CashAdjusted, an unknown symbol's
        rejection) and exchange-wide events but SymbolAdded carry 0. Exchange-wide events take
        the next exchange sequence.
        """
        for event in events:
            if isinstance(event, EXCHANGE_WIDE):
                assert event.exchange_sequence == self.exchange_sequence + 1, event
                self.exchange_sequence = event.exchange_sequence
                if not isinstance(event, SymbolAdded):
                    assert event.sequence == 0, event
                    continue
            else:
                assert not hasattr(event, "exchange_sequence"), event
            if event.sequence == 0:
                assert isinstance(event, NO_STREAM_EVENTS) or (
                    isinstance(event, OrderRejected) and event.reason == Reason.UNKNOWN_SYMBOL
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

    def observe(self, events: list) -> list[tuple]:
        """The events as the reference sees them; remembers each order's latest state."""
        result = []
        for event in events:
            seen = observed(event)
            if seen is None:
                continue
            result.append(seen)
            if seen[0] == "order":
                self.order_states[seen[2]] = seen
                self.unsettled.add(seen[2])
                self.emitted.append((event, seen))
            if type(event) is OrderFilled:
                result.append(("fee", event.order.order_id, event.fee))
        return result

    def check_sample(self, now: int, events: list) -> list:
        """The first command of a new minute of log time ends with every participant's score
        (all accounts here are participants); no other command brings one."""
        minute = now // MINUTE_NS
        last, self.last_minute = self.last_minute, max(minute, self.last_minute or 0)
        sampled = [e for e in events if isinstance(e, ScoresSampled)]
        self.command_exchange_sequence = self.exchange_sequence  # the command's own last one
        if last is None or minute <= last:
            assert not sampled, sampled
            return events
        assert sampled == events[-1:], events
        self.command_exchange_sequence -= 1
        assert self.pending_sample is None  # one command per rule takes a new minute
        self.pending_sample = (sampled[0], minute - last)
        return events[:-1]

    @invariant()
    def scores_agree(self):
        """A score sampled by the step's command, against the reference's account (which has
        taken the command by now) at the reference's marks; drawdown and sharpe recomputed
        exactly from the samples (minutes without a command: no change)."""
        if self.pending_sample is None:
            return
        (sample, minutes), self.pending_sample = self.pending_sample, None
        assert [score.user_id for score in sample.scores] == list(self.ref.accounts)
        spread = self.engine.settings.mark_max_spread_ticks
        marks = {symbol: self.ref.mark(symbol, spread) for symbol in SYMBOLS}
        for score in sample.scores:
            user = score.user_id
            ref = self.ref.accounts[user]
            equity = ref.cash + sum(
                quantity * marks[symbol] for symbol, quantity in ref.positions.items()
            )
            pnl = equity - ref.starting_value
            realized = sum(p.realized_pnl for p in self.engine.accounts[user].positions.values())
            assert (score.equity, score.pnl, score.fees_paid) == (equity, pnl, ref.fees_paid)
            assert (score.realized_pnl, score.round_pnls) == (realized, ()), score
            changes, last_pnl, peak, drawdown = self.samples[user]
            changes.extend([0] * (minutes - 1))
            changes.append(pnl - last_pnl)
            peak = max(peak, pnl)
            drawdown = max(drawdown, peak - pnl)
            self.samples[user] = (changes, pnl, peak, drawdown)
            assert score.max_drawdown == drawdown, (score, changes)
            expected = 0.0
            if len(changes) >= 2:
                mean = Fraction(sum(changes), len(changes))
                variance = Fraction(sum(c * c for c in changes), len(changes)) - mean * mean
                if variance:
                    expected = float(mean) / math.sqrt(variance)
            assert math.isclose(score.sharpe, expected, rel_tol=1e-6, abs_tol=1e-6), (
                score,
                changes,
            )

    def place(self, user, symbol, side, type_, tif, price, quantity, client_order_id="") -> str:
        self.next_id += 1
        order_id = f"o{self.next_id}"
        place = engine_pb2.PlaceOrderCommand(
            order_id=order_id,
            user_id=user,
            symbol=symbol,
            side=side,
            type=type_,
            time_in_force=tif,
            price_ticks=price,
            quantity=quantity,
            client_order_id=client_order_id,
        )
        command = self.command(self.session_of(user), place_order=place)
        events = self.apply(command)
        expected = self.ref.place(
            order_id, user, symbol, side, type_, tif, price, quantity, client_order_id
        )
        assert self.observe(events) == expected
        first = events[0]
        if isinstance(first, CommandRefused):
            assert len(events) == 1 and first.user_id == user
        else:
            assert type(first.order) is OrderTerms
            assert first.order == (
                order_id,
                user,
                symbol,
                side,
                type_,
                tif,
                0 if type_ == OrderType.MARKET else price,
                quantity,
                client_order_id,
                command.timestamp_ns,
            )
        return order_id

    def open_account(self, user: str, cash: int, grants) -> None:
        create = engine_pb2.CreateAccountCommand(
            user_id=user, cash_units=cash, grants=grants_to_proto(grants)
        )
        events = self.apply(self.command(ADMIN_SESSION, create_account=create))
        assert len(events) == 1
        if not self.ref.create_account(user, cash, grants):
            assert isinstance(events[0], CommandRefused), events
            assert (events[0].reason, events[0].user_id) == (Refusal.ACCOUNT_EXISTS, user)
            return
        created = events[0]
        assert isinstance(created, AccountCreated), events
        valued = tuple(
            Grant(symbol, quantity, price or SYMBOLS[symbol][3])
            for symbol, quantity, price in grants
        )
        assert (created.user_id, created.cash, created.grants) == (user, cash, valued)
        assert created.starting_value == self.ref.accounts[user].starting_value
        self.expected_cash += cash
        for symbol, quantity, _ in grants:
            self.expected_positions[symbol] += quantity
            self.granted[(user, symbol)] += quantity
        self.samples[user] = ([], 0, 0, 0)

    def snapshot_and_restore(self) -> None:
        """Snapshot the handler, round-trip the bytes, restore: the copy must equal the original
        now, snapshot to the same message, and answer every later command the same way."""
        snapshot = self.handler.snapshot()
        restored = CommandHandler.restore(
            engine_pb2.EngineSnapshot.FromString(snapshot.SerializeToString())
        )
        assert state_of(restored) == state_of(self.handler)
        assert restored.snapshot() == snapshot
        self.shadow = restored

    def mark(self, symbol: str) -> int:
        """A price to value positions at: the last trade, else the reference price."""
        return self.engine.symbols[symbol].last or SYMBOLS[symbol][3]

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
        client_order_id=client_ids,
    )
    def place_limit(self, user, symbol, side, tif, offset, lot_count, client_order_id):
        _, _, lot_size, middle = SYMBOLS[symbol]
        return self.place(
            user,
            symbol,
            side,
            OrderType.LIMIT,
            tif,
            middle + offset,
            lot_count * lot_size,
            client_order_id,
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
        client_order_id=client_ids,
    )
    def place_market(self, user, symbol, side, tif, lot_count, client_order_id):
        lot_size = SYMBOLS[symbol][2]
        return self.place(
            user, symbol, side, OrderType.MARKET, tif, 0, lot_count * lot_size, client_order_id
        )

    @rule(
        target=orders,
        user=st.sampled_from([*TRADERS, "erin", "ghost"]),
        symbol=st.sampled_from([*SYMBOLS, *SYMBOLS, "NOPE"]),
        side=st.sampled_from([*Side, 0]),
        type_=st.sampled_from(list(OrderType)),
        tif=st.sampled_from(list(TimeInForce)),
        price=st.sampled_from([0, -1, 19, 20, 21, 99, 100, 101]),
        quantity=st.sampled_from([0, -1, 1, 3, 5, 10, 1_000_001]),
        client_order_id=client_ids,
    )
    def place_anything(self, user, symbol, side, type_, tif, price, quantity, client_order_id):
        """Any combination, invalid ones included: MARKET GFD, price 0, off-lot quantities..."""
        return self.place(user, symbol, side, type_, tif, price, quantity, client_order_id)

    @rule(
        order_id=orders,
        how=st.sampled_from(["by owner", "by owner", "by admin", "by another user", "unknown id"]),
        other=st.sampled_from([*TRADERS, "erin"]),
    )
    def cancel(self, order_id, how, other):
        placed = self.ref.orders.get(order_id)  # None for a refused duplicate clientOrderId
        user, is_admin = placed.user if placed else other, False
        if how == "by admin":
            user, is_admin = "ops", True
        elif how == "by another user":
            user = other  # may turn out to be the owner after all
        elif how == "unknown id":
            order_id = "never-placed"
        cancel = engine_pb2.CancelOrderCommand(order_id=order_id, user_id=user, is_admin=is_admin)
        events = self.apply(self.command(self.session_of(user), cancel_order=cancel))
        assert self.observe(events) == self.ref.cancel(order_id, user, is_admin)

    @rule(
        order_id=orders,
        pick=st.integers(0, 1 << 16),
        how=st.sampled_from(
            ["resting", "resting", "resting", "resting", "any", "by another user", "unknown id"]
        ),
        other=st.sampled_from([*TRADERS, "erin"]),
        price_change=st.sampled_from([None, None, -2, -1, 1, 2, 0, "zero", "cross", "cross"]),
        quantity_change=st.sampled_from([None, -2, -1, 1, 2, 12, 0, "filled", "off lot"]),
    )
    def amend(self, order_id, pick, how, other, price_change, quantity_change):
        """Mostly a resting order by its owner (else any order placed, finished ones too):
        a new price (a few ticks either way, through the opposite side, the same, or 0) and/or
        a new total quantity (a lot or two less or more, a dozen lots more to reach the cash
        and position limits, the same, exactly the filled part, off the lot)."""
        if how == "resting" and self.ref.resting:
            order_id = self.ref.resting[pick % len(self.ref.resting)].order_id
        placed = self.ref.orders.get(order_id)  # None for a refused duplicate clientOrderId
        user = placed.user if placed else other
        if how == "by another user":
            user = other  # may turn out to be the owner after all
        elif how == "unknown id":
            order_id = "never-placed"
        price = quantity = None
        if placed is not None:
            lot_size = SYMBOLS[placed.symbol][2] if placed.symbol in SYMBOLS else 1
            if price_change == "zero":
                price = 0
            elif price_change == "cross":
                price = self.crossing_price(placed)
            elif price_change is not None:
                price = placed.price + price_change
            if quantity_change == "filled":
                quantity = placed.filled
            elif quantity_change == "off lot":
                quantity = placed.quantity + 1 if lot_size > 1 else placed.quantity + lot_size
            elif quantity_change is not None:
                quantity = placed.quantity + quantity_change * lot_size
        amend = engine_pb2.AmendOrderCommand(order_id=order_id, user_id=user)
        if price is not None:
            amend.price_ticks = price
        if quantity is not None:
            amend.quantity = quantity
        events = self.apply(self.command(self.session_of(user), amend_order=amend))
        assert self.observe(events) == self.ref.amend(order_id, user, price, quantity)
        amended = [i for i, e in enumerate(events) if isinstance(e, OrderAmended)]
        if amended:
            # The new terms, before any fill the new price brings (which carry them too).
            terms = events[amended[0]].order
            assert (terms.order_id, terms.price, terms.quantity) == (
                order_id,
                placed.price,
                placed.quantity,
            )
            fills = [e.order for e in events if isinstance(e, OrderFilled)]
            assert all(amended[0] < i for i, e in enumerate(events) if isinstance(e, OrderFilled))
            assert all(t == terms for t in fills if t.order_id == order_id)

    def crossing_price(self, order) -> int:
        """One tick through the best opposite order of the symbol, or two ticks towards it
        when there is none."""
        opposite = [
            o.price for o in self.ref.resting if o.symbol == order.symbol and o.side != order.side
        ]
        if order.side == Side.BUY:
            return min(opposite) + 1 if opposite else order.price + 2
        return max(opposite) - 1 if opposite else order.price - 2

    @rule(command=st.sampled_from(["close", "halt ACME", "halt BETA", "halt", "resume", "open"]))
    def market_command(self, command):
        """Close the day, halt one symbol or all; "resume" and "open" often change nothing."""
        name, _, symbol = command.partition(" ")
        self.run_market_command(name, symbol)

    @precondition(
        lambda self: (
            not self.engine.market_open
            or any(state.halted for state in self.engine.symbols.values())
        )
    )
    @rule(symbol=st.sampled_from([*SYMBOLS, ""]))
    def back_to_trading(self, symbol):
        """Open the market if it is closed, else resume the symbol (or all)."""
        self.run_market_command("resume" if self.engine.market_open else "open", symbol)

    def run_market_command(self, name, symbol):
        was_open = self.engine.market_open
        if name == "close":
            events = self.apply(self.command("", close_market=engine_pb2.CloseMarketCommand()))
            assert sorted(self.observe(events)) == sorted(self.ref.close_market())
            assert [type(e) for e in events if isinstance(e, EXCHANGE_WIDE)] == (
                [TradingDayClosed] if was_open else []
            )
        elif name == "open":
            events = self.apply(self.command("", open_market=engine_pb2.OpenMarketCommand()))
            self.ref.open_market()
            assert self.observe(events) == []
            assert [type(e) for e in events if isinstance(e, EXCHANGE_WIDE)] == (
                [] if was_open else [TradingDayOpened]
            )
        elif name == "halt":
            halt = engine_pb2.HaltTradingCommand(symbol=symbol)
            events = self.apply(self.command("", halt_trading=halt))
            changed = self.ref.halt(symbol)
            assert [e for e in events if isinstance(e, EXCHANGE_WIDE)] == (
                [TradingHalted(symbol, 0, self.now, self.command_exchange_sequence)]
                if changed
                else []
            )
        else:
            resume = engine_pb2.ResumeTradingCommand(symbol=symbol)
            events = self.apply(self.command("", resume_trading=resume))
            changed = self.ref.resume(symbol)
            assert [e for e in events if isinstance(e, EXCHANGE_WIDE)] == (
                [TradingResumed(symbol, 0, self.now, self.command_exchange_sequence)]
                if changed
                else []
            )

    @rule(minutes=st.sampled_from([1, 1, 2, 5]))
    def wait(self, minutes):
        """Log time passes without a command: the next one samples the scores, and the minutes
        between count as no change."""
        self.now += minutes * MINUTE_NS

    @rule(
        kind=st.sampled_from(
            [
                "configure",
                "adjust cash",
                "open account",
                "resend",
                "lose",
                "late",
                "disable",
                "enable",
                "enable",
                "cancel all",
            ]
        ),
        pick=st.integers(0, 1 << 16),
    )
    def housekeeping(self, kind, pick):
        """A settings change, a cash adjustment, the late account (or an existing one again), a
        gateway's resend of a command already applied (answered from the ledger), a command lost
        on its way (its sequence skipped: a gap), a lost command arriving late, a user disabled
        or enabled, a user's orders cancelled. `pick` chooses the details: one draw costs far
        less than several, and shrinks towards the first choice of each."""
        if kind == "configure":
            short_limit = (0, 3, 6)[pick % 3]
            max_open = (0, 2, 3)[pick // 3 % 3]
            previous = self.engine.settings
            fees = pick // 9 % (2 * len(FEES))  # half the time the fees stay
            maker_fee, taker_fee = (
                FEES[fees]
                if fees < len(FEES)
                else (previous.maker_fee_centi_bps, previous.taker_fee_centi_bps)
            )
            new = dataclasses.replace(
                previous,
                short_limit=short_limit,
                max_open_orders=max_open,
                maker_fee_centi_bps=maker_fee,
                taker_fee_centi_bps=taker_fee,
            )
            configure = engine_pb2.ConfigureExchangeCommand(
                settings=engine_pb2.ExchangeSettings(
                    rules_version=new.rules_version,
                    short_limit=short_limit,
                    max_open_orders=max_open,
                    position_limit=previous.position_limit,
                    maker_fee_centi_bps=maker_fee,
                    taker_fee_centi_bps=taker_fee,
                    mark_max_spread_ticks=previous.mark_max_spread_ticks,
                )
            )
            events = self.apply(self.command("", configure_exchange=configure))
            expected = (
                []
                if new == previous
                else [
                    SettingsChanged("", 0, self.now, self.command_exchange_sequence, new, previous)
                ]
            )
            assert events == expected
            self.ref.configure(short_limit, max_open, maker_fee, taker_fee)
            self.max_short_limit = max(self.max_short_limit, short_limit)
        elif kind == "adjust cash":
            user = (*ACCOUNTS, "erin", "ghost")[pick % 6]
            amount = (-200_000, -20_000, 20_000, 150_000)[pick // 6 % 4]
            adjust = engine_pb2.AdjustCashCommand(user_id=user, amount_units=amount)
            events = self.apply(self.command(ADMIN_SESSION, adjust_cash=adjust))
            refusal = self.ref.adjust_cash(user, amount)
            if refusal is None:
                ref = self.ref.accounts[user]
                assert events == [
                    CashAdjusted("", 0, self.now, user, amount, ref.cash, ref.starting_value)
                ]
                self.expected_cash += amount
            else:
                assert [observed(e) for e in events] == [("refused", refusal, "")]
        elif kind == "open account":
            if pick % 2:
                self.open_account("alice", 1, ())  # exists: refused
            else:
                self.open_account(*LATE_ACCOUNT)  # refused from the second time on
        elif kind == "lose":
            session_id = GATEWAYS[pick % 2]
            self.session_sequences[session_id] += 1
            self.lost.append((session_id, self.session_sequences[session_id]))
        elif kind == "late" and self.lost:
            session_id, sequence = self.lost.pop(pick % len(self.lost))
            self.now += 1
            late = engine_pb2.EngineCommand(
                timestamp_ns=self.now,
                session_id=session_id,
                session_sequence=sequence,
                cancel_order=engine_pb2.CancelOrderCommand(order_id="lost", user_id="alice"),
            )
            events = self.apply(late)
            assert self.observe(events) == self.ref.cancel("lost", "alice")
            assert self.handler.is_applied(late)
        elif kind in ("disable", "enable"):
            user = (*ACCOUNTS, "erin", "ghost")[pick % 6]
            account = self.ref.accounts.get(user)
            changes = account is not None and account.disabled != (kind == "disable")
            if kind == "disable":
                command = engine_pb2.DisableUserCommand(user_id=user)
                events = self.apply(self.command(ADMIN_SESSION, disable_user=command))
                assert self.observe(events) == self.ref.disable(user)
                notice = [UserDisabled("", 0, self.now, user)] if changes else []
            else:
                command = engine_pb2.EnableUserCommand(user_id=user)
                events = self.apply(self.command(ADMIN_SESSION, enable_user=command))
                assert self.observe(events) == self.ref.enable(user)
                notice = [UserEnabled("", 0, self.now, user)] if changes else []
            assert [e for e in events if isinstance(e, (UserDisabled, UserEnabled))] == notice
            if notice:
                assert events[-1] == notice[0]
        elif kind == "cancel all":
            # Users with an account only (others are refused: test_engine_v2_accounts.py).
            user = list(ACCOUNTS)[pick % 4]
            symbol = ("", "ACME", "BETA", "NOPE")[pick // 4 % 4]
            is_admin = bool(pick // 16 % 2)
            command = engine_pb2.CancelAllCommand(user_id=user, symbol=symbol, is_admin=is_admin)
            events = self.apply(self.command(self.session_of(user), cancel_all=command))
            assert self.observe(events) == self.ref.cancel_all(user, symbol, is_admin)
        elif kind == "resend":
            session_id, sequence = self.sent[pick % len(self.sent)]
            resend = engine_pb2.EngineCommand(
                session_id=session_id,
                session_sequence=sequence,
                open_market=engine_pb2.OpenMarketCommand(),
            )
            assert self.handler.is_applied(resend)
            if self.shadow is not None:
                assert self.shadow.is_applied(resend)
            resend.session_sequence = self.session_sequences[session_id] + 1
            assert not self.handler.is_applied(resend)

    # ---- agreement with the reference ---------------------------------------------------------

    @invariant()
    def orders_agree(self):
        """The latest event of every order says what the reference says of it now; an open
        order's live state says it too."""
        # A finished order (in the reference) changes no more: it is checked once more after
        # its last event, and again only if the engine sends another event about it.
        to_check, self.unsettled = self.unsettled, set()
        for order_id in to_check:
            seen = self.order_states[order_id]
            ref = self.ref.orders[order_id]
            assert seen[3:] == (ref.status, ref.reason, ref.filled, ref.notional, ref.remaining), (
                seen,
                ref,
            )
            if ref.status not in FINISHED_STATUSES:
                self.unsettled.add(order_id)
        for order_id, order in self.engine.open_orders.items():
            assert (
                order.status,
                order.reason,
                order.filled_quantity,
                order.filled_notional,
                order.remaining,
            ) == self.order_states[order_id][3:], order

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
                    symbol,
                    book_side.side,
                )

    @invariant()
    def accounts_agree(self):
        assert list(self.engine.accounts) == list(self.ref.accounts)
        reserved_cash, reserved_positions, buying = self.ref.reservations()
        for user, account in self.engine.accounts.items():
            ref = self.ref.accounts[user]
            assert account.cash == ref.cash, user
            assert account.starting_value == ref.starting_value, user
            assert account.reserved_cash == reserved_cash.get(user, 0), user
            assert (account.fees_paid, account.disabled) == (ref.fees_paid, ref.disabled), user
            for symbol in SYMBOLS:
                position = account.positions.get(symbol)
                quantity, reserved, buys = (
                    (position.quantity, position.reserved, position.buying)
                    if position
                    else (0,) * 3
                )
                assert quantity == ref.positions.get(symbol, 0), (user, symbol)
                assert reserved == reserved_positions.get((user, symbol), 0), (user, symbol)
                assert buys == buying.get((user, symbol), 0), (user, symbol)
        assert self.engine.fees_collected == self.ref.fees_collected
        assert self.engine.client_orders == self.ref.client_orders
        settings = self.engine.settings
        assert settings.short_limit == self.ref.short_limit
        assert settings.max_open_orders == self.ref.max_open_orders
        assert settings.position_limit == self.ref.position_limit
        assert (settings.maker_fee_centi_bps, settings.taker_fee_centi_bps) == (
            self.ref.maker_fee,
            self.ref.taker_fee,
        )

    @invariant()
    def pnl_adds_up_exactly(self):
        """Equity minus starting value is realized plus unrealized P&L less fees, to the cash
        unit. Each
        position a fill moved: its integer average cost is within one unit per closing fill of
        the exact one, and cost and realized P&L move together exactly."""
        for user, account in self.engine.accounts.items():
            equity = account.cash
            realized = unrealized = 0
            for symbol, position in account.positions.items():
                value = position.quantity * self.mark(symbol) * SYMBOLS[symbol][1]
                equity += value
                realized += position.realized_pnl
                unrealized += value - position.cost
            assert type(realized) is int and type(unrealized) is int, user
            # Fees are P&L but no position's: they come off cash, not cost or realized P&L.
            assert equity - account.starting_value == realized + unrealized - account.fees_paid
        for user, symbol in self.ref.moved:
            position = self.engine.accounts[user].positions[symbol]
            ref = self.ref.accounts[user]
            if position.quantity == 0:
                assert position.cost == 0, (user, symbol)
            exact_cost = ref.cost[symbol]
            exact_realized = ref.realized.get(symbol, 0)
            assert position.realized_pnl - position.cost == exact_realized - exact_cost
            assert abs(position.cost - exact_cost) <= ref.closes.get(symbol, 0), (
                user,
                symbol,
                position.cost,
                exact_cost,
            )
        self.ref.moved.clear()

    # ---- the engine's own invariants ------------------------------------------------------------

    @invariant()
    def sequences_and_books_are_consistent(self):
        assert self.engine.exchange_sequence == self.exchange_sequence
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
                            level.price,
                            book_side.side,
                            state.symbol,
                        )
                        assert order.type == OrderType.LIMIT
                        assert order.time_in_force in (TimeInForce.GFD, TimeInForce.GTC)
                        resting_ids.add(order.order_id)
        assert set(self.engine.open_orders) == resting_ids

    @invariant()
    def cash_and_positions_are_conserved(self):
        """Fees leave the accounts into the fee account (rebates the other way): cash plus the
        fees collected is what the accounts were given, plus or minus the outside flows."""
        accounts = self.engine.accounts.values()
        assert sum(a.cash for a in accounts) + self.engine.fees_collected == self.expected_cash
        assert self.engine.fees_collected == sum(a.fees_paid for a in accounts)
        for symbol in SYMBOLS:
            total = sum(a.positions[symbol].quantity for a in accounts if symbol in a.positions)
            assert total == self.expected_positions[symbol], symbol

    @invariant()
    def reservations_match_open_orders(self):
        mine: dict[str, list] = {user: [] for user in self.engine.accounts}
        for order in self.engine.open_orders.values():
            if order.user_id:
                mine[order.user_id].append(order)
        for user, account in self.engine.accounts.items():
            buys = [o for o in mine[user] if o.side == Side.BUY]
            for order in buys:
                # Exactly what the remainder needs at its limit with the worst fee of its
                # acceptance.
                ref = self.ref.orders[order.order_id]
                need = order.price * order.remaining * SYMBOLS[order.symbol][1]
                need += fee_on(need, ref.worst_rate)
                assert order.reserved_cash == self.ref.held_cash(ref) == need, order
            assert account.reserved_cash == sum(o.reserved_cash for o in buys), user
            assert 0 <= account.reserved_cash <= account.cash, user
            for symbol, position in account.positions.items():
                sells = sum(
                    o.remaining for o in mine[user] if o.side == Side.SELL and o.symbol == symbol
                )
                buying = sum(o.remaining for o in buys if o.symbol == symbol)
                assert (position.reserved, position.buying) == (sells, buying), (user, symbol)
                assert position.quantity - position.reserved >= -self.max_short_limit
            assert self.engine.open_order_counts.get(user, 0) == len(mine[user]), user
        for order_id, order in self.seen_open.items():
            if order_id not in self.engine.open_orders:  # finished since: holds nothing
                assert order.is_finished and order.reserved_cash == 0, order
        self.seen_open = dict(self.engine.open_orders)

    @invariant()
    def positions_stay_within_the_limit(self):
        """No accepted order can take a position beyond the limit, counting the open orders of
        its side: only a grant can put a position above it, and then no BUY is accepted."""
        limit = self.engine.settings.position_limit
        if not limit:
            return
        for user, account in self.engine.accounts.items():
            for symbol, position in account.positions.items():
                most = max(limit, self.granted[(user, symbol)])
                assert position.quantity + position.buying <= most, (user, symbol)
                assert position.quantity - position.reserved >= -limit, (user, symbol)

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
            spread = self.engine.settings.mark_max_spread_ticks
            assert quote.mark == self.ref.mark(symbol, spread), symbol
            day = self.ref.symbols[symbol]
            assert (quote.last, quote.volume, quote.open, quote.high, quote.low) == (
                day.last,
                day.volume,
                day.open,
                day.high,
                day.low,
            ), symbol

    def teardown(self):
        """Events emitted long ago still say what they said; the restored copy ends equal; the
        ledger holds exactly the gaps of the lost commands. Skipped when the run already failed
        (or Hypothesis cut it short): one failure, reported once."""
        if not hasattr(self, "handler") or sys.exc_info()[0] is not None:
            return
        assert [observed(event) for event, _ in self.emitted] == [seen for _, seen in self.emitted]
        if self.shadow is not None:
            assert state_of(self.shadow) == state_of(self.handler)
        for session_id, ledger in self.handler.ledger.sessions.items():
            gaps = [sequence for session, sequence in self.lost if session == session_id]
            through = min(gaps) - 1 if gaps else self.session_sequences[session_id]
            after = {n for session, n in self.sent if session == session_id and n > through}
            assert (ledger.applied_through, ledger.applied_after) == (through, after), session_id


EngineVsReference.TestCase.settings = settings(
    max_examples=MAX_EXAMPLES,
    stateful_step_count=STEP_COUNT,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestEngineVsReference = EngineVsReference.TestCase
