"""One small test per matching rule of docs/matching.md (SPEC.md section 2)."""

from __future__ import annotations

import itertools
from typing import NamedTuple

import pytest

from engine_svc.engine import MatchingEngine
from engine_svc.events import (
    EXCHANGE_WIDE,
    BookLevelChanged,
    CancelRejected,
    CommandRefused,
    Grant,
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
    OrderStatus,
    OrderType,
    Reason,
    Refusal,
    Side,
    SymbolStatus,
    TimeInForce,
)
from engine_svc.rules import ExchangeSettings

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
GFD, IOC, FOK, GTC = TimeInForce.GFD, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.GTC
NEW, PARTIALLY_FILLED, FILLED = OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED
CANCELLED, EXPIRED, REJECTED = OrderStatus.CANCELLED, OrderStatus.EXPIRED, OrderStatus.REJECTED

ALICE, BOB, CAROL = "alice", "bob", "carol"
CASH = 10_000_000  # cash units of 0.0001: 1,000.00
START_POSITION = 1_000
TICK_CASH = 100  # cash units per tick of 0.01
ORDER_EVENTS = (OrderAccepted, OrderRejected, OrderFilled, OrderCancelled, OrderExpired)


class OrderState(NamedTuple):
    """An order's state as its latest event told it."""

    status: OrderStatus
    reason: Reason
    filled_quantity: int
    remaining: int


def state_in(event) -> OrderState:
    """The state an order event carries (events are values: never the live order)."""
    quantity = event.order.quantity
    if isinstance(event, OrderAccepted):
        return OrderState(NEW, Reason.NONE, 0, quantity)
    if isinstance(event, OrderRejected):
        return OrderState(REJECTED, event.reason, 0, quantity)
    if isinstance(event, OrderFilled):
        status, reason = event.status, Reason.NONE
    else:
        status = CANCELLED if isinstance(event, OrderCancelled) else EXPIRED
        reason = event.reason
    return OrderState(status, reason, event.filled_quantity, quantity - event.filled_quantity)


class RecordingEngine:
    """The engine, with every command's events recorded: an order's state is its latest event's.

    Everything else (symbols, accounts, open_orders...) is the engine's own attribute.
    """

    COMMANDS = frozenset(
        (
            "place_order",
            "cancel_order",
            "close_market",
            "open_market",
            "halt",
            "resume",
            "add_symbol",
            "create_account",
            "adjust_cash",
            "configure",
        )
    )

    def __init__(self, engine: MatchingEngine) -> None:
        self.engine = engine
        self.latest: dict[str, OrderState] = {}

    def __getattr__(self, name: str):
        value = getattr(self.engine, name)
        if name not in self.COMMANDS:
            return value

        def command(*args, **kwargs) -> list:
            events = value(*args, **kwargs)
            for event in events:
                if isinstance(event, ORDER_EVENTS):
                    self.latest[event.order.order_id] = state_in(event)
            return events

        return command


class Placed:
    """What a test knows of an order it placed: its id, its terms, and its state now, read from
    the latest event about it."""

    def __init__(self, engine: RecordingEngine, order_id: str, terms) -> None:
        self.engine = engine
        self.order_id = order_id
        self.terms = terms

    @property
    def state(self) -> OrderState:
        return self.engine.latest[self.order_id]

    @property
    def status(self) -> OrderStatus:
        return self.state.status

    @property
    def reason(self) -> Reason:
        return self.state.reason

    @property
    def filled_quantity(self) -> int:
        return self.state.filled_quantity

    @property
    def remaining(self) -> int:
        return self.state.remaining


def create_account(engine, user: str, cash: int, positions: dict[str, int] | None = None):
    """An account with starting positions granted at the symbol's reference price."""
    grants = tuple(Grant(symbol, quantity, 0) for symbol, quantity in (positions or {}).items())
    return engine.create_account(user, cash, now=0, grants=grants)


def new_engine(**settings) -> RecordingEngine:
    """ACME (tick 0.01, lot 1) and three funded accounts holding 1,000 ACME each."""
    engine = RecordingEngine(MatchingEngine(settings=ExchangeSettings(**settings)))
    engine.add_symbol("ACME", now=0)
    for user in (ALICE, BOB, CAROL):
        create_account(engine, user, CASH, {"ACME": START_POSITION})
    return engine


@pytest.fixture
def engine() -> RecordingEngine:
    return new_engine()


_order_ids = itertools.count(1)


def place(
    engine: RecordingEngine,
    user: str = ALICE,
    side: Side = BUY,
    price: int = 100,
    quantity: int = 10,
    type: OrderType = LIMIT,
    tif: TimeInForce = GFD,
    symbol: str = "ACME",
    order_id: str = "",
    now: int = 1,
):
    """Place one order; returns what is known of it (state from its events) and the events."""
    order_id = order_id or f"o{next(_order_ids)}"
    events = engine.place_order(order_id, user, symbol, side, type, tif, price, quantity, now)
    assert events[0].order.order_id == order_id
    return Placed(engine, order_id, events[0].order), events


def buy(engine, user=ALICE, price=100, quantity=10, **kwargs):
    return place(engine, user, BUY, price, quantity, **kwargs)


def sell(engine, user=BOB, price=100, quantity=10, **kwargs):
    return place(engine, user, SELL, price, quantity, **kwargs)


def of(events, kind) -> list:
    return [e for e in events if isinstance(e, kind)]


def trades(events) -> list[tuple[int, int, str, str]]:
    return [
        (t.price, t.quantity, t.buy_order_id, t.sell_order_id) for t in of(events, TradeExecuted)
    ]


def bids(engine, symbol="ACME"):
    return engine.symbols[symbol].book.bids.depth()


def asks(engine, symbol="ACME"):
    return engine.symbols[symbol].book.asks.depth()


def account(engine, user):
    return engine.accounts[user]


# ---- prices and priority ---------------------------------------------------------------------


def test_trade_executes_at_resting_price(engine):
    resting_sell, _ = sell(engine, price=100, quantity=10)
    incoming_buy, events = buy(engine, price=105, quantity=10)
    assert trades(events) == [(100, 10, incoming_buy.order_id, resting_sell.order_id)]

    resting_buy, _ = buy(engine, price=100, quantity=10)
    incoming_sell, events = sell(engine, price=95, quantity=10)
    assert trades(events) == [(100, 10, resting_buy.order_id, incoming_sell.order_id)]


def test_price_priority_better_price_first(engine):
    at_102, _ = sell(engine, BOB, price=102, quantity=10)
    at_101, _ = sell(engine, CAROL, price=101, quantity=10)
    at_103, _ = sell(engine, BOB, price=103, quantity=10)
    order, events = buy(engine, price=103, quantity=25)
    assert trades(events) == [
        (101, 10, order.order_id, at_101.order_id),
        (102, 10, order.order_id, at_102.order_id),
        (103, 5, order.order_id, at_103.order_id),
    ]
    assert asks(engine) == [(103, 5, 1)]


def test_time_priority_at_same_price(engine):
    first, _ = sell(engine, BOB, price=100, quantity=10)
    second, _ = sell(engine, CAROL, price=100, quantity=10)
    order, events = buy(engine, price=100, quantity=15)
    assert trades(events) == [
        (100, 10, order.order_id, first.order_id),
        (100, 5, order.order_id, second.order_id),
    ]
    assert (first.status, second.status) == (FILLED, PARTIALLY_FILLED)
    assert asks(engine) == [(100, 5, 1)]


def test_execution_events_come_in_documented_order(engine):
    resting, _ = sell(engine, price=100, quantity=10)
    order, events = buy(engine, price=100, quantity=4)
    kinds = [type(e) for e in events]
    assert kinds == [
        OrderAccepted,
        TradeExecuted,
        OrderFilled,
        OrderFilled,
        BookLevelChanged,
        QuoteChanged,
    ]
    assert events[2].order == resting.terms and events[3].order == order.terms
    assert (events[2].filled_quantity, events[2].status) == (4, PARTIALLY_FILLED)
    assert (events[3].filled_quantity, events[3].status) == (4, FILLED)
    assert (events[4].side, events[4].price, events[4].quantity) == (SELL, 100, 6)
    n = events[0].sequence
    assert [e.sequence for e in events] == [n, n + 1, n + 1, n + 1, n + 2, n + 3]


# ---- time in force ---------------------------------------------------------------------------


def test_gfd_remainder_rests(engine):
    sell(engine, price=100, quantity=5)
    order, events = buy(engine, price=100, quantity=10, tif=GFD)
    assert (order.status, order.filled_quantity, order.remaining) == (PARTIALLY_FILLED, 5, 5)
    assert bids(engine) == [(100, 5, 1)]
    assert asks(engine) == []
    assert events[-2] == BookLevelChanged("ACME", events[-2].sequence, 1, BUY, 100, 5, 1)
    assert order.order_id in engine.open_orders


def test_ioc_remainder_expires_filled_part_kept(engine):
    sell(engine, price=100, quantity=5)
    order, events = buy(engine, price=101, quantity=10, tif=IOC)
    assert (order.status, order.reason) == (EXPIRED, Reason.UNFILLED_REMAINDER)
    assert order.filled_quantity == 5
    assert of(events, OrderExpired)[0].order.order_id == order.order_id
    assert bids(engine) == [] and asks(engine) == []
    assert account(engine, ALICE).cash == CASH - 100 * 5 * TICK_CASH
    assert account(engine, ALICE).reserved_cash == 0
    assert order.order_id not in engine.open_orders


def test_ioc_without_liquidity_expires_unfilled_remainder(engine):
    order, _ = buy(engine, price=100, quantity=10, tif=IOC)
    assert (order.status, order.reason, order.filled_quantity) == (
        EXPIRED,
        Reason.UNFILLED_REMAINDER,
        0,
    )


def test_fok_fills_whole_quantity(engine):
    sell(engine, BOB, price=100, quantity=5)
    sell(engine, CAROL, price=101, quantity=5)
    order, events = buy(engine, price=101, quantity=10, tif=FOK)
    assert (order.status, order.filled_quantity) == (FILLED, 10)
    assert [t[:2] for t in trades(events)] == [(100, 5), (101, 5)]
    assert asks(engine) == []


def test_fok_expires_without_fill_when_not_enough_liquidity(engine):
    sell(engine, BOB, price=100, quantity=5)
    sell(engine, CAROL, price=102, quantity=5)
    book_before = asks(engine)
    order, events = buy(engine, price=101, quantity=10, tif=FOK)
    assert (order.status, order.reason, order.filled_quantity) == (EXPIRED, Reason.FILL_OR_KILL, 0)
    assert [type(e) for e in events] == [OrderAccepted, OrderExpired]
    assert asks(engine) == book_before
    assert account(engine, ALICE).reserved_cash == 0
    assert account(engine, ALICE).cash == CASH


def test_fok_ignores_own_orders_when_counting_liquidity(engine):
    own, _ = sell(engine, ALICE, price=100, quantity=5)
    other, _ = sell(engine, BOB, price=100, quantity=5)
    order, events = buy(engine, ALICE, price=100, quantity=10, tif=FOK)
    assert (order.status, order.reason) == (EXPIRED, Reason.FILL_OR_KILL)
    assert own.status == NEW  # an expired FOK touches no resting order
    assert asks(engine) == [(100, 10, 2)]

    order, events = buy(engine, ALICE, price=100, quantity=5, tif=FOK)
    assert order.status == FILLED
    assert (own.status, own.reason) == (CANCELLED, Reason.SELF_TRADE)
    assert trades(events) == [(100, 5, order.order_id, other.order_id)]


# ---- MARKET orders ---------------------------------------------------------------------------


def test_market_order_takes_best_prices_rest_expires(engine):
    sell(engine, BOB, price=100, quantity=5)
    sell(engine, CAROL, price=101, quantity=5)
    order, events = buy(engine, price=0, quantity=15, type=MARKET, tif=IOC)
    assert [t[:2] for t in trades(events)] == [(100, 5), (101, 5)]
    assert (order.status, order.reason, order.filled_quantity) == (
        EXPIRED,
        Reason.UNFILLED_REMAINDER,
        10,
    )
    assert asks(engine) == [] and bids(engine) == []
    assert account(engine, ALICE).reserved_cash == 0


def test_market_order_on_empty_side_expires(engine):
    sell(engine, BOB, price=100, quantity=5)  # same side only: nothing to take
    order, events = sell(engine, CAROL, price=0, quantity=10, type=MARKET, tif=IOC)
    assert (order.status, order.reason, order.filled_quantity) == (EXPIRED, Reason.NO_LIQUIDITY, 0)
    assert [type(e) for e in events] == [OrderAccepted, OrderExpired]
    assert engine.accounts[CAROL].positions["ACME"].reserved == 0


@pytest.mark.parametrize("tif", [GFD, GTC])
def test_market_order_with_gfd_is_rejected_invalid(engine, tif):
    order, events = buy(engine, price=0, quantity=10, type=MARKET, tif=tif)
    assert (order.status, order.reason) == (REJECTED, Reason.INVALID_ORDER)
    assert [type(e) for e in events] == [OrderRejected]


def test_market_fok_all_or_nothing(engine):
    sell(engine, BOB, price=100, quantity=5)
    sell(engine, CAROL, price=200, quantity=5)
    order, events = buy(engine, price=0, quantity=12, type=MARKET, tif=FOK)
    assert (order.status, order.reason, order.filled_quantity) == (EXPIRED, Reason.FILL_OR_KILL, 0)
    assert trades(events) == []
    assert asks(engine) == [(100, 5, 1), (200, 5, 1)]

    order, events = buy(engine, price=0, quantity=10, type=MARKET, tif=FOK)
    assert order.status == FILLED
    assert [t[:2] for t in trades(events)] == [(100, 5), (200, 5)]


def test_market_order_price_is_ignored(engine):
    sell(engine, BOB, price=100, quantity=5)
    order, events = buy(engine, price=1, quantity=5, type=MARKET, tif=IOC)
    assert order.terms.price == 0
    assert order.status == FILLED
    assert [t[:2] for t in trades(events)] == [(100, 5)]


# ---- self-trade prevention ---------------------------------------------------------------------


def test_self_trade_cancels_resting_order_and_matching_goes_on(engine):
    own, _ = sell(engine, ALICE, price=100, quantity=5)
    other, _ = sell(engine, BOB, price=100, quantity=5)
    order, events = buy(engine, ALICE, price=100, quantity=10)
    assert (own.status, own.reason) == (CANCELLED, Reason.SELF_TRADE)
    assert of(events, OrderCancelled)[0].order.order_id == own.order_id
    assert trades(events) == [(100, 5, order.order_id, other.order_id)]
    assert (order.status, order.filled_quantity) == (PARTIALLY_FILLED, 5)
    assert bids(engine) == [(100, 5, 1)] and asks(engine) == []
    assert account(engine, ALICE).positions["ACME"].reserved == 0


def test_user_less_orders_skip_self_trade_prevention_and_accounts(engine):
    resting, _ = sell(engine, "", price=100, quantity=5)
    order, events = buy(engine, "", price=100, quantity=5)
    assert trades(events) == [(100, 5, order.order_id, resting.order_id)]
    assert all(a.cash == CASH for a in engine.accounts.values())


# ---- cancel ------------------------------------------------------------------------------------


def test_cancel_by_owner(engine):
    order, _ = buy(engine, ALICE, price=100, quantity=10)
    events = engine.cancel_order(order.order_id, ALICE, now=2)
    assert of(events, OrderCancelled)[0].order.order_id == order.order_id
    assert (order.status, order.reason) == (CANCELLED, Reason.CANCELLED_BY_OWNER)
    assert bids(engine) == []
    assert account(engine, ALICE).reserved_cash == 0
    assert order.order_id not in engine.open_orders


def test_cancel_by_admin(engine):
    order, _ = sell(engine, BOB, price=100, quantity=10)
    events = engine.cancel_order(order.order_id, "ops", now=2, is_admin=True)
    assert of(events, OrderCancelled)[0].order.order_id == order.order_id
    assert (order.status, order.reason) == (CANCELLED, Reason.CANCELLED_BY_ADMIN)
    assert asks(engine) == []
    assert account(engine, BOB).positions["ACME"].reserved == 0


def test_cancel_by_other_user_is_refused(engine):
    order, _ = buy(engine, ALICE, price=100, quantity=10)
    events = engine.cancel_order(order.order_id, BOB, now=2)
    assert len(events) == 1 and isinstance(events[0], CancelRejected)
    assert (events[0].reason, events[0].sequence) == (Reason.NOT_ORDER_OWNER, 0)
    assert order.status == NEW
    assert bids(engine) == [(100, 10, 1)]


def test_cancel_of_finished_order_is_refused(engine):
    sell(engine, BOB, price=100, quantity=10)
    filled, _ = buy(engine, ALICE, price=100, quantity=10)
    resting, _ = buy(engine, ALICE, price=90, quantity=10)
    engine.cancel_order(resting.order_id, ALICE, now=2)
    for order_id in (filled.order_id, resting.order_id, "never-placed"):
        events = engine.cancel_order(order_id, ALICE, now=3)
        assert len(events) == 1 and isinstance(events[0], CancelRejected)
        assert (events[0].reason, events[0].sequence) == (Reason.UNKNOWN_ORDER, 0)
    assert (filled.status, resting.status) == (FILLED, CANCELLED)


# ---- trading day, halts ----------------------------------------------------------------------


def test_day_close_expires_gfd_orders_keeps_gtc(engine):
    day, _ = buy(engine, ALICE, price=100, quantity=10, tif=GFD)
    good, _ = buy(engine, ALICE, price=99, quantity=10, tif=GTC)
    day_sell, _ = sell(engine, BOB, price=105, quantity=7, tif=GFD)
    events = engine.close_market(now=5)
    assert (day.status, day.reason) == (EXPIRED, Reason.DAY_CLOSE)
    assert (day_sell.status, day_sell.reason) == (EXPIRED, Reason.DAY_CLOSE)
    assert good.status == NEW
    assert {e.order.order_id for e in of(events, OrderExpired)} == {day.order_id, day_sell.order_id}
    assert of(events, MarketStateChanged)[0].status == SymbolStatus.CLOSED
    assert bids(engine) == [(99, 10, 1)] and asks(engine) == []
    assert account(engine, ALICE).reserved_cash == 99 * 10 * TICK_CASH
    assert account(engine, BOB).positions["ACME"].reserved == 0
    assert list(engine.open_orders) == [good.order_id]


def test_closed_market_rejects_orders(engine):
    engine.close_market(now=5)
    order, _ = buy(engine)
    assert (order.status, order.reason) == (REJECTED, Reason.MARKET_CLOSED)
    events = engine.open_market(now=6)
    assert of(events, MarketStateChanged)[0].status == SymbolStatus.OPEN
    order, _ = buy(engine)
    assert order.status == NEW


def test_halted_symbol_rejects_orders_other_symbols_trade(engine):
    engine.add_symbol("BETA", now=0)
    events = engine.halt(now=2, symbol="ACME")
    states = of(events, MarketStateChanged)
    assert [(e.symbol, e.status) for e in states] == [("ACME", SymbolStatus.HALTED)]
    order, _ = buy(engine, symbol="ACME")
    assert (order.status, order.reason) == (REJECTED, Reason.SYMBOL_HALTED)
    sell(engine, "", price=100, quantity=10, symbol="BETA")
    order, events = buy(engine, "", price=100, quantity=10, symbol="BETA")
    assert order.status == FILLED and len(trades(events)) == 1


def test_halt_all_and_resume(engine):
    engine.add_symbol("BETA", now=0)
    events = engine.halt(now=2)
    assert {(e.symbol, e.status) for e in of(events, MarketStateChanged)} == {
        ("ACME", SymbolStatus.HALTED),
        ("BETA", SymbolStatus.HALTED),
    }
    for symbol in ("ACME", "BETA"):
        order, _ = buy(engine, symbol=symbol)
        assert (order.status, order.reason) == (REJECTED, Reason.SYMBOL_HALTED)
    events = engine.resume(now=3)
    assert {(e.symbol, e.status) for e in of(events, MarketStateChanged)} == {
        ("ACME", SymbolStatus.OPEN),
        ("BETA", SymbolStatus.OPEN),
    }
    for symbol in ("ACME", "BETA"):
        order, _ = buy(engine, symbol=symbol, price=50)
        assert order.status == NEW


def test_cancel_allowed_while_halted(engine):
    order, _ = buy(engine, price=100, quantity=10, tif=GTC)
    engine.halt(now=2, symbol="ACME")
    events = engine.cancel_order(order.order_id, ALICE, now=3)
    assert of(events, OrderCancelled) and order.status == CANCELLED

    engine.resume(now=4, symbol="ACME")
    order, _ = buy(engine, price=100, quantity=10, tif=GTC)
    engine.close_market(now=5)
    events = engine.cancel_order(order.order_id, ALICE, now=6)
    assert of(events, OrderCancelled) and order.status == CANCELLED


# ---- validation --------------------------------------------------------------------------------


def test_unknown_symbol_rejected(engine):
    order, events = buy(engine, symbol="NOPE")
    assert (order.status, order.reason) == (REJECTED, Reason.UNKNOWN_SYMBOL)
    assert len(events) == 1 and isinstance(events[0], OrderRejected)
    assert events[0].sequence == 0


def test_unknown_user_rejected(engine):
    order, _ = buy(engine, "ghost")
    assert (order.status, order.reason) == (REJECTED, Reason.UNKNOWN_USER)
    order, _ = buy(engine, "")  # user-less (benchmark flow): no account needed
    assert order.status == NEW


def test_quantity_limits_and_lot_size(engine):
    for quantity in (0, -1, 1_000_001):
        order, _ = buy(engine, "", quantity=quantity)
        assert (order.status, order.reason) == (REJECTED, Reason.INVALID_ORDER), quantity
    order, _ = buy(engine, "", price=1, quantity=1_000_000)
    assert order.status == NEW

    engine.add_symbol("LOTS", now=0, lot_size=10)
    order, _ = buy(engine, "", quantity=15, symbol="LOTS")
    assert (order.status, order.reason) == (REJECTED, Reason.INVALID_ORDER)
    order, _ = buy(engine, "", quantity=20, symbol="LOTS")
    assert order.status == NEW


def test_invalid_side_type_or_time_in_force_rejected(engine):
    for side, type_, tif in ((0, LIMIT, GFD), (BUY, 9, GFD), (BUY, LIMIT, 0)):
        order, _ = place(engine, "", side, 100, 10, type_, tif)
        assert (order.status, order.reason) == (REJECTED, Reason.INVALID_ORDER)


def test_limit_price_must_be_positive(engine):
    for price in (0, -5):
        order, _ = buy(engine, price=price)
        assert (order.status, order.reason) == (REJECTED, Reason.INVALID_ORDER)


def test_rejection_checks_come_in_documented_order(engine):
    engine.close_market(now=2)
    engine.halt(now=2, symbol="ACME")
    # invalid before closed, closed before halted, halted before the account checks
    assert buy(engine, "ghost", price=0)[0].reason == Reason.INVALID_ORDER
    assert buy(engine, "ghost")[0].reason == Reason.MARKET_CLOSED
    engine.open_market(now=3)
    assert buy(engine, "ghost")[0].reason == Reason.SYMBOL_HALTED
    engine.resume(now=4)
    assert buy(engine, "ghost")[0].reason == Reason.UNKNOWN_USER


# ---- accounts ----------------------------------------------------------------------------------


def test_insufficient_cash_rejected(engine):
    create_account(engine, "dave", 100 * 10 * TICK_CASH)
    order, _ = buy(engine, "dave", price=100, quantity=11)
    assert (order.status, order.reason) == (REJECTED, Reason.INSUFFICIENT_CASH)
    order, _ = buy(engine, "dave", price=100, quantity=10)
    assert order.status == NEW
    order, _ = buy(engine, "dave", price=1, quantity=1)  # everything is reserved
    assert (order.status, order.reason) == (REJECTED, Reason.INSUFFICIENT_CASH)


def test_buy_reserves_cash_at_limit_price_and_releases_improvement(engine):
    sell(engine, BOB, price=95, quantity=4)
    order, _ = buy(engine, ALICE, price=100, quantity=10)
    alice = account(engine, ALICE)
    assert alice.cash == CASH - 95 * 4 * TICK_CASH
    assert alice.reserved_cash == engine.open_orders[order.order_id].reserved_cash
    assert alice.reserved_cash == 100 * 6 * TICK_CASH
    sell(engine, CAROL, price=100, quantity=6)
    assert order.status == FILLED
    assert alice.cash == CASH - (95 * 4 + 100 * 6) * TICK_CASH
    assert alice.reserved_cash == 0


def test_market_buy_reserves_what_it_can_take(engine):
    sell(engine, BOB, price=100, quantity=5)
    sell(engine, CAROL, price=102, quantity=5)
    cost = (100 * 5 + 102 * 5) * TICK_CASH
    create_account(engine, "poor", cost - 1)
    create_account(engine, "dave", cost, {"ACME": 5})
    order, _ = buy(engine, "poor", quantity=10, type=MARKET, tif=IOC)
    assert (order.status, order.reason) == (REJECTED, Reason.INSUFFICIENT_CASH)
    # dave's own ask at 90 is skipped when pricing his MARKET BUY (self-trade cancels it)
    own, _ = sell(engine, "dave", price=90, quantity=5)
    order, _ = buy(engine, "dave", quantity=20, type=MARKET, tif=IOC)
    assert (order.status, order.filled_quantity) == (EXPIRED, 10)
    assert own.reason == Reason.SELF_TRADE
    assert account(engine, "dave").cash == 0
    assert account(engine, "dave").reserved_cash == 0


def test_sell_needs_position(engine):
    create_account(engine, "dave", CASH)
    order, _ = sell(engine, "dave", quantity=1)
    assert (order.status, order.reason) == (REJECTED, Reason.INSUFFICIENT_POSITION)
    first, _ = sell(engine, ALICE, price=200, quantity=600)
    assert first.status == NEW
    assert account(engine, ALICE).positions["ACME"].reserved == 600
    order, _ = sell(engine, ALICE, price=200, quantity=401)
    assert (order.status, order.reason) == (REJECTED, Reason.INSUFFICIENT_POSITION)
    order, _ = sell(engine, ALICE, price=200, quantity=400)
    assert order.status == NEW


def test_short_limit_allows_selling_short():
    engine = new_engine(short_limit=50)
    create_account(engine, "dave", CASH)
    order, _ = sell(engine, "dave", price=100, quantity=50)
    assert order.status == NEW
    order, _ = sell(engine, "dave", price=100, quantity=1)
    assert (order.status, order.reason) == (REJECTED, Reason.INSUFFICIENT_POSITION)
    buy(engine, ALICE, price=100, quantity=50)
    dave = account(engine, "dave")
    assert dave.positions["ACME"].quantity == -50
    assert dave.cash == CASH + 100 * 50 * TICK_CASH


def test_fills_move_cash_and_positions(engine):
    sell(engine, BOB, price=100, quantity=10)
    buy(engine, ALICE, price=100, quantity=10)
    alice, bob = account(engine, ALICE), account(engine, BOB)
    assert alice.cash == CASH - 100 * 10 * TICK_CASH
    assert bob.cash == CASH + 100 * 10 * TICK_CASH
    assert alice.positions["ACME"].quantity == START_POSITION + 10
    assert bob.positions["ACME"].quantity == START_POSITION - 10
    assert bob.positions["ACME"].reserved == 0
    assert sum(a.cash for a in engine.accounts.values()) == 3 * CASH
    assert sum(a.positions["ACME"].quantity for a in engine.accounts.values()) == 3 * START_POSITION


def test_avg_price_and_realized_pnl(engine):
    create_account(engine, "dave", CASH)
    sell(engine, BOB, price=100, quantity=10)
    buy(engine, "dave", price=100, quantity=10)
    sell(engine, BOB, price=110, quantity=10)
    buy(engine, "dave", price=110, quantity=10)
    position = account(engine, "dave").positions["ACME"]
    assert position.quantity == 20
    assert position.cost == (10 * 100 + 10 * 110) * TICK_CASH  # 21.00
    assert position.average_price_units() == 105 * TICK_CASH  # 1.05
    assert position.realized_pnl == 0

    buy(engine, ALICE, price=120, quantity=5)
    sell(engine, "dave", price=120, quantity=5)
    assert position.realized_pnl == (120 - 105) * 5 * TICK_CASH  # (1.20 - 1.05) x 5 = 0.75
    assert position.average_price_units() == 105 * TICK_CASH

    buy(engine, ALICE, price=90, quantity=15)
    sell(engine, "dave", price=90, quantity=15)
    assert position.quantity == 0
    assert position.cost == 0 and position.average_price_units() == 0
    assert position.realized_pnl == (75 - 225) * TICK_CASH  # 0.75 - 2.25
    assert account(engine, "dave").realized_pnl == -150 * TICK_CASH  # -1.50


def test_open_order_limit():
    engine = new_engine(max_open_orders=2)
    first, _ = buy(engine, ALICE, price=90)
    buy(engine, ALICE, price=91)
    order, _ = buy(engine, ALICE, price=92)
    assert (order.status, order.reason) == (REJECTED, Reason.OPEN_ORDER_LIMIT)
    assert buy(engine, ALICE, price=92, tif=IOC)[0].reason == Reason.OPEN_ORDER_LIMIT
    assert buy(engine, BOB, price=92)[0].status == NEW
    engine.cancel_order(first.order_id, ALICE, now=2)
    assert buy(engine, ALICE, price=92)[0].status == NEW
    for _ in range(3):  # user-less orders have no cap
        assert buy(engine, "", price=80)[0].status == NEW


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"symbol": "NOPE"}, Reason.UNKNOWN_SYMBOL),
        ({"price": 0}, Reason.INVALID_ORDER),
        ({"user": "ghost"}, Reason.UNKNOWN_USER),
        ({"quantity": 1_001}, Reason.INSUFFICIENT_CASH),
        ({"side": SELL, "quantity": 1_001}, Reason.INSUFFICIENT_POSITION),
    ],
)
def test_rejected_order_has_reason(engine, kwargs, reason):
    order, events = place(engine, **{"order_id": "rej-1", **kwargs})
    assert order.order_id == "rej-1"
    assert (order.status, order.reason) == (REJECTED, reason)
    assert [type(e) for e in events] == [OrderRejected]
    assert account(engine, ALICE).reserved_cash == 0
    assert account(engine, ALICE).positions["ACME"].reserved == 0
    assert "rej-1" not in engine.open_orders


# ---- events ------------------------------------------------------------------------------------


PUBLIC_EVENTS = (SymbolAdded, BookLevelChanged, TradeExecuted, QuoteChanged)


def test_sequences_increase_by_one_per_symbol(engine):
    """Public market events count +1 each per symbol; order events carry the current value."""
    events = engine.add_symbol("BETA", now=0)
    assert isinstance(events[0], SymbolAdded) and events[0].sequence == 1
    # ACME's own SymbolAdded, from the fixture
    events += [SymbolAdded("ACME", 1, 0, 1, "0.01", 1, 0)]
    resting, more = sell(engine, BOB, price=100, quantity=10)
    events += more
    events += sell(engine, "", price=100, quantity=10, symbol="BETA")[1]
    events += buy(engine, ALICE, price=101, quantity=15)[1]
    events += buy(engine, ALICE, price=101, quantity=1, symbol="NOPE")[1]
    events += buy(engine, "ghost", price=101, quantity=1)[1]
    events += engine.cancel_order("unknown", ALICE, now=2)
    events += engine.halt(now=3)
    events += buy(engine, "", symbol="BETA")[1]
    events += engine.resume(now=4)
    events += engine.close_market(now=5)
    events += engine.open_market(now=6)
    current: dict[str, int] = {}
    public_count = 0
    for event in events:
        if event.sequence == 0:
            # replies and exchange-wide events (trading day, halts) are in no symbol's stream
            assert isinstance(event, (CancelRejected, CommandRefused, *EXCHANGE_WIDE)) or (
                event.reason == Reason.UNKNOWN_SYMBOL
            ), event
            continue
        if isinstance(event, PUBLIC_EVENTS):
            assert event.sequence == current.get(event.symbol, 0) + 1, event
            current[event.symbol] = event.sequence
            public_count += 1
        else:
            assert event.sequence == current[event.symbol], event
    for symbol, sequence in current.items():
        assert engine.symbols[symbol].sequence == sequence
    assert public_count > 15


def _script(engine: MatchingEngine) -> list:
    engine.add_symbol("BETA", now=0, tick_size="0.05", lot_size=5)
    events = []
    events += sell(engine, BOB, price=100, quantity=10, order_id="a", now=10)[1]
    events += sell(engine, CAROL, price=101, quantity=10, order_id="b", now=11)[1]
    events += buy(engine, ALICE, price=101, quantity=15, order_id="c", now=12)[1]
    events += buy(engine, "", price=20, quantity=10, symbol="BETA", order_id="d", now=13)[1]
    events += sell(
        engine, "", price=0, quantity=5, symbol="BETA", type=MARKET, tif=IOC, order_id="e", now=14
    )[1]
    events += engine.cancel_order("b", CAROL, now=15)
    events += engine.close_market(now=16)
    events += engine.open_market(now=17)
    return events


def _plain(value) -> bool:
    """A value of plain, immutable data: no live Order, Account or book object inside."""
    if isinstance(value, tuple):
        return all(_plain(item) for item in value)
    return isinstance(value, str | int | ExchangeSettings)


def test_events_deterministic_for_same_commands_and_times():
    first = _script(new_engine())
    second = _script(new_engine())
    assert all(_plain(event) for event in first)
    assert first == second
    assert len(first) > 20


def test_quote_changed_after_trade(engine):
    _, events = sell(engine, BOB, price=101, quantity=10)
    quote = of(events, QuoteChanged)[-1]
    assert (quote.bid, quote.ask, quote.ask_size, quote.volume) == (0, 101, 10, 0)

    _, events = buy(engine, ALICE, price=90, quantity=1)  # new best bid
    assert of(events, QuoteChanged)[-1].bid == 90
    _, events = buy(engine, ALICE, price=80, quantity=1)  # below the top: no quote
    assert of(events, QuoteChanged) == []
    _, events = buy(engine, "ghost", price=101, quantity=1)  # rejected: no quote
    assert of(events, QuoteChanged) == []

    _, events = buy(engine, ALICE, price=101, quantity=4)
    assert isinstance(events[-1], QuoteChanged)
    quote = events[-1]
    assert (quote.bid, quote.bid_size, quote.ask, quote.ask_size) == (90, 1, 101, 6)
    assert (quote.last, quote.last_quantity, quote.volume) == (101, 4, 4)
    assert (quote.open, quote.high, quote.low) == (101, 101, 101)

    buy(engine, CAROL, price=101, quantity=6)
    sell(engine, BOB, price=95, quantity=3)
    _, events = sell(engine, BOB, price=90, quantity=1)
    quote = events[-1]
    assert (quote.last, quote.volume, quote.open, quote.high, quote.low) == (90, 11, 101, 101, 90)


def test_tick_size_and_lot_size_per_symbol(engine):
    events = engine.add_symbol("BETA", now=0, tick_size="0.05", lot_size=10)
    assert (events[0].tick_size, events[0].lot_size) == ("0.05", 10)
    assert engine.symbols["BETA"].tick_cash == 500
    create_account(engine, "dave", 20 * 10 * 500, {"BETA": 10})
    order, _ = buy(engine, "dave", price=20, quantity=5, symbol="BETA")
    assert (order.status, order.reason) == (REJECTED, Reason.INVALID_ORDER)
    order, _ = buy(engine, "dave", price=20, quantity=10, symbol="BETA")
    assert order.status == NEW
    assert account(engine, "dave").reserved_cash == 20 * 10 * 500  # 10 x 1.00 = 100,000 units
    create_account(engine, "erin", 0, {"BETA": 10})
    sell(engine, "erin", price=20, quantity=10, symbol="BETA")
    assert account(engine, "erin").cash == 20 * 10 * 500
    assert account(engine, "dave").cash == 0
    refused = engine.add_symbol("TINY", now=0, tick_size="0.00001")
    assert [(type(e), e.reason) for e in refused] == [(CommandRefused, Refusal.INVALID_ARGUMENT)]
    assert "TINY" not in engine.symbols


def test_day_open_resets_statistics(engine):
    sell(engine, BOB, price=100, quantity=10, tif=GTC)
    buy(engine, ALICE, price=100, quantity=4)
    engine.close_market(now=5)
    events = engine.open_market(now=6)
    quote = of(events, QuoteChanged)[0]
    assert (quote.volume, quote.open, quote.high, quote.low) == (0, 0, 0, 0)
    assert (quote.ask, quote.ask_size) == (100, 6)  # the GTC order survived the night
    _, events = buy(engine, ALICE, price=100, quantity=2)
    quote = of(events, QuoteChanged)[-1]
    assert (quote.volume, quote.open, quote.high, quote.low) == (2, 100, 100, 100)
