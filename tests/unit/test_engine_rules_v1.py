"""Rules of the rewritten engine (rules version 1), one behaviour per test.

clientOrderId deduplication, refused commands, cost basis and exact integer P&L, cash
adjustments, the exchange-wide sequence, settings changes, and order events as values (what an
event says is what was true when it was emitted). State is read from the events, or from the
engine's accounts and books; never from a live order inside an event.
"""

from __future__ import annotations

import itertools

import pytest

from engine_svc.codec import event_to_proto
from engine_svc.engine import MatchingEngine
from engine_svc.events import (
    EXCHANGE_WIDE,
    AccountCreated,
    CashAdjusted,
    CommandRefused,
    Grant,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    SettingsChanged,
    SymbolAdded,
    TradeExecuted,
    TradingDayClosed,
    TradingDayOpened,
    TradingHalted,
    TradingResumed,
)
from engine_svc.orders import (
    OrderStatus,
    OrderTerms,
    OrderType,
    Reason,
    Refusal,
    Side,
    TimeInForce,
)
from engine_svc.rules import ExchangeSettings
from exchange.v1 import types_pb2

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
GFD, IOC, FOK, GTC = TimeInForce.GFD, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.GTC
ALICE, BOB = "alice", "bob"
CASH = 10_000_000  # 1,000.00 in cash units of 0.0001
TICK_CASH = 100  # cash units per tick of 0.01
REFERENCE = 100  # ACME's reference price in ticks (1.00)
MAKER = ""  # a user-less flow: the other side of a trade without an account of its own

_ids = itertools.count(1)


def new_engine(**settings) -> MatchingEngine:
    """ACME (tick 0.01, reference price 1.00) and two funded accounts holding no shares."""
    engine = MatchingEngine(settings=ExchangeSettings(**settings), market_open=True)
    engine.add_symbol("ACME", now=0, reference_price=REFERENCE)
    for user in (ALICE, BOB):
        engine.create_account(user, CASH, now=0)
    return engine


@pytest.fixture
def engine() -> MatchingEngine:
    return new_engine()


def place(
    engine: MatchingEngine,
    user: str = ALICE,
    side: Side = BUY,
    price: int = 100,
    quantity: int = 10,
    type: OrderType = LIMIT,
    tif: TimeInForce = GFD,
    symbol: str = "ACME",
    client_order_id: str = "",
    order_id: str = "",
    now: int = 1,
) -> list:
    order_id = order_id or f"o{next(_ids)}"
    return engine.place_order(
        order_id, user, symbol, side, type, tif, price, quantity, now, client_order_id
    )


def trade(engine: MatchingEngine, user: str, side: Side, price: int, quantity: int) -> None:
    """`user` trades `quantity` at `price` against a user-less maker, in full."""
    place(engine, MAKER, SELL if side == BUY else BUY, price, quantity)
    events = place(engine, user, side, price, quantity, tif=IOC)
    assert sum(e.quantity for e in events if isinstance(e, TradeExecuted)) == quantity, events


def only(events: list, kind: type):
    assert len(events) == 1 and isinstance(events[0], kind), events
    return events[0]


def pnl(engine: MatchingEngine, user: str, marks: dict[str, int]) -> int:
    """Equity at the marks (ticks) minus the starting value, in cash units."""
    account = engine.accounts[user]
    equity = account.cash
    for symbol, position in account.positions.items():
        equity += position.quantity * marks[symbol] * engine.symbols[symbol].tick_cash
    return equity - account.starting_value


def realized_plus_unrealized(engine: MatchingEngine, user: str, marks: dict[str, int]) -> int:
    account = engine.accounts[user]
    total = 0
    for symbol, position in account.positions.items():
        value = position.quantity * marks[symbol] * engine.symbols[symbol].tick_cash
        total += position.realized_pnl + value - position.cost
    return total


# ---- duplicate clientOrderId -------------------------------------------------------------------


def test_duplicate_client_order_id_is_refused_naming_the_first_order(engine):
    first = place(engine, client_order_id="c-1", order_id="first")
    assert isinstance(first[0], OrderAccepted)
    book_before = engine.symbols["ACME"].book.bids.depth()
    sequence_before = engine.symbols["ACME"].sequence

    events = place(engine, client_order_id="c-1", order_id="retry", price=99)

    refused = only(events, CommandRefused)
    assert (refused.reason, refused.order_id, refused.user_id) == (
        Refusal.DUPLICATE_CLIENT_ORDER_ID,
        "first",
        ALICE,
    )
    assert "clientOrderId" in refused.message
    assert (refused.symbol, refused.sequence) == ("", 0)
    assert engine.symbols["ACME"].book.bids.depth() == book_before
    assert engine.symbols["ACME"].sequence == sequence_before
    assert "retry" not in engine.open_orders
    assert engine.accounts[ALICE].reserved_cash == 100 * 10 * TICK_CASH  # the first order's only


def test_duplicate_client_order_id_of_a_rejected_order_names_the_rejected_order(engine):
    rejected = place(engine, quantity=100_000, client_order_id="c-1", order_id="too-big")
    assert only(rejected, OrderRejected).reason == Reason.INSUFFICIENT_CASH

    refused = only(place(engine, quantity=1, client_order_id="c-1"), CommandRefused)

    assert (refused.reason, refused.order_id) == (Refusal.DUPLICATE_CLIENT_ORDER_ID, "too-big")


def test_duplicate_client_order_id_of_an_unknown_symbol_reject_names_that_order(engine):
    rejected = place(engine, symbol="NOPE", client_order_id="c-1", order_id="nope")
    assert only(rejected, OrderRejected).reason == Reason.UNKNOWN_SYMBOL

    refused = only(place(engine, symbol="ACME", client_order_id="c-1"), CommandRefused)

    assert (refused.reason, refused.order_id) == (Refusal.DUPLICATE_CLIENT_ORDER_ID, "nope")


def test_client_order_ids_are_forgotten_at_day_close(engine):
    place(engine, client_order_id="c-1", tif=GTC)
    engine.close_market(now=2)
    engine.open_market(now=3)

    events = place(engine, client_order_id="c-1", order_id="next-day", now=4)

    assert isinstance(events[0], OrderAccepted)
    assert engine.client_orders == {(ALICE, "c-1"): "next-day"}


def test_client_order_ids_tried_while_closed_are_free_again_at_the_open(engine):
    engine.close_market(now=2)
    rejected = place(engine, client_order_id="c-1", order_id="closed", now=3)
    assert only(rejected, OrderRejected).reason == Reason.MARKET_CLOSED
    engine.open_market(now=4)

    events = place(engine, client_order_id="c-1", order_id="today", now=5)

    assert isinstance(events[0], OrderAccepted)


def test_an_account_with_negative_cash_or_grants_is_refused(engine):
    for cash, grants in ((-1, ()), (0, (Grant("ACME", -5, 100),)), (0, (Grant("ACME", 5, -1),))):
        (refused,) = engine.create_account("neg" + str(cash) + str(grants), cash, 9, grants)
        assert isinstance(refused, CommandRefused)
        assert refused.reason == Refusal.INVALID_ARGUMENT


def test_client_order_ids_are_per_user(engine):
    place(engine, ALICE, client_order_id="c-1")

    events = place(engine, BOB, price=90, client_order_id="c-1", order_id="bobs")

    assert isinstance(events[0], OrderAccepted)
    assert engine.client_orders[(BOB, "c-1")] == "bobs"


def test_user_less_orders_are_never_deduplicated(engine):
    for _ in range(2):
        assert isinstance(place(engine, MAKER, client_order_id="c-1")[0], OrderAccepted)
    assert engine.client_orders == {}


def test_an_order_without_client_order_id_is_never_deduplicated(engine):
    for _ in range(2):
        assert isinstance(place(engine, client_order_id="")[0], OrderAccepted)


# ---- refused commands -----------------------------------------------------------------------


def _reserve_cash(engine: MatchingEngine) -> None:
    place(engine, ALICE, BUY, 100, 10)  # holds 100,000 of alice's 10,000,000 units


@pytest.mark.parametrize(
    ("command", "reason", "field"),
    [
        (lambda e: e.add_symbol("ACME", now=5), Refusal.SYMBOL_EXISTS, "symbol"),
        (lambda e: e.add_symbol("X", now=5, tick_size="0"), Refusal.INVALID_ARGUMENT, "tickSize"),
        (lambda e: e.add_symbol("X", 5, tick_size="-0.01"), Refusal.INVALID_ARGUMENT, "tickSize"),
        (lambda e: e.add_symbol("X", 5, tick_size="cheap"), Refusal.INVALID_ARGUMENT, "tickSize"),
        (lambda e: e.add_symbol("X", 5, tick_size="0.00001"), Refusal.INVALID_ARGUMENT, "tickSize"),
        (lambda e: e.add_symbol("X", 5, lot_size=0), Refusal.INVALID_ARGUMENT, "lotSize"),
        (
            lambda e: e.add_symbol("X", 5, reference_price=-1),
            Refusal.INVALID_ARGUMENT,
            "referencePrice",
        ),
        (lambda e: e.create_account(ALICE, 1, now=5), Refusal.ACCOUNT_EXISTS, "userId"),
        (lambda e: e.create_account("", 1, now=5), Refusal.INVALID_ARGUMENT, "userId"),
        (
            lambda e: e.create_account("dave", 1, now=5, grants=(Grant("NOPE", 1, 1),)),
            Refusal.UNKNOWN_SYMBOL,
            "positions",
        ),
        (lambda e: e.halt(now=5, symbol="NOPE"), Refusal.UNKNOWN_SYMBOL, "symbol"),
        (lambda e: e.resume(now=5, symbol="NOPE"), Refusal.UNKNOWN_SYMBOL, "symbol"),
        (lambda e: e.adjust_cash("ghost", 1, now=5), Refusal.UNKNOWN_ACCOUNT, "userId"),
        (
            lambda e: e.adjust_cash(ALICE, -(CASH - 100 * 10 * TICK_CASH) - 1, now=5),
            Refusal.INVALID_ARGUMENT,
            "amount",
        ),
    ],
    ids=[
        "duplicate symbol",
        "zero tick size",
        "negative tick size",
        "tick size not a number",
        "tick size finer than a cash unit",
        "lot size 0",
        "negative reference price",
        "existing account",
        "empty user id",
        "grant of an unlisted symbol",
        "halt of an unknown symbol",
        "resume of an unknown symbol",
        "adjust cash of an unknown user",
        "adjust cash below what open orders hold",
    ],
)
def test_refused_command_answers_command_refused_naming_the_field(engine, command, reason, field):
    _reserve_cash(engine)
    symbols_before = dict(engine.symbols)
    accounts_before = {
        user: (account.cash, account.starting_value) for user, account in engine.accounts.items()
    }
    exchange_sequence = engine.exchange_sequence

    refused = only(command(engine), CommandRefused)

    assert refused.reason == reason
    assert field in refused.message, refused.message
    assert (refused.symbol, refused.sequence, refused.timestamp) == ("", 0, 5)
    assert engine.exchange_sequence == exchange_sequence  # a refusal is not exchange-wide
    assert engine.symbols == symbols_before
    assert {
        user: (account.cash, account.starting_value) for user, account in engine.accounts.items()
    } == accounts_before


def test_adjust_cash_down_to_exactly_what_open_orders_hold_is_allowed(engine):
    _reserve_cash(engine)
    held = engine.accounts[ALICE].reserved_cash

    adjusted = only(engine.adjust_cash(ALICE, held - CASH, now=5), CashAdjusted)

    assert adjusted.cash == held == engine.accounts[ALICE].cash


def test_command_refused_converts_to_its_proto(engine):
    place(engine, client_order_id="c-1", order_id="first")
    refused = only(place(engine, client_order_id="c-1"), CommandRefused)

    message = event_to_proto(refused)

    assert message.WhichOneof("event") == "command_refused"
    assert message.command_refused.reason == Refusal.DUPLICATE_CLIENT_ORDER_ID
    assert (message.command_refused.order_id, message.command_refused.user_id) == ("first", ALICE)
    assert message.exchange_sequence == 0


# ---- cost basis and P&L ---------------------------------------------------------------------


def test_grant_at_an_explicit_price_is_the_position_cost_and_part_of_starting_value(engine):
    events = engine.create_account("dave", 50_000, now=1, grants=(Grant("ACME", 10, 120),))

    created = only(events, AccountCreated)
    assert created.grants == (Grant("ACME", 10, 120),)
    position = engine.accounts["dave"].positions["ACME"]
    assert (position.quantity, position.cost, position.realized_pnl) == (10, 10 * 120 * 100, 0)
    assert created.starting_value == engine.accounts["dave"].starting_value == 50_000 + 120_000


def test_grant_at_price_zero_is_valued_at_the_reference_price(engine):
    events = engine.create_account("dave", 50_000, now=1, grants=(Grant("ACME", 10, 0),))

    created = only(events, AccountCreated)
    assert created.grants == (Grant("ACME", 10, REFERENCE),)  # the event says the price taken
    assert engine.accounts["dave"].positions["ACME"].cost == 10 * REFERENCE * TICK_CASH
    assert created.starting_value == 50_000 + 10 * REFERENCE * TICK_CASH


def test_grant_cost_uses_the_symbols_tick_value(engine):
    engine.add_symbol("BETA", now=0, tick_size="0.05", lot_size=5, reference_price=20)

    engine.create_account("dave", 0, now=1, grants=(Grant("BETA", 10, 0), Grant("ACME", 2, 3)))

    dave = engine.accounts["dave"]
    assert dave.positions["BETA"].cost == 10 * 20 * 500  # 10 x 1.00
    assert dave.positions["ACME"].cost == 2 * 3 * 100  # 2 x 0.03
    assert dave.starting_value == 100_000 + 600


def test_grant_of_a_symbol_without_reference_price_at_price_zero_costs_nothing(engine):
    engine.add_symbol("NEWCO", now=0)

    engine.create_account("dave", 1_000, now=1, grants=(Grant("NEWCO", 10, 0),))

    assert engine.accounts["dave"].positions["NEWCO"].cost == 0
    assert engine.accounts["dave"].starting_value == 1_000


def test_two_grants_of_one_symbol_give_one_position_worth_both(engine):
    engine.create_account("dave", 0, now=1, grants=(Grant("ACME", 10, 100), Grant("ACME", 5, 100)))

    dave = engine.accounts["dave"]
    assert (dave.positions["ACME"].quantity, dave.positions["ACME"].cost) == (15, 150_000)
    assert dave.starting_value == 150_000


def test_pnl_is_zero_for_a_participant_who_never_traded(engine):
    engine.create_account("dave", 50_000, now=1, grants=(Grant("ACME", 10, 0),))
    marks = {"ACME": REFERENCE}  # no trade yet: marked at the reference price
    assert pnl(engine, "dave", marks) == 0 == realized_plus_unrealized(engine, "dave", marks)

    trade(engine, ALICE, BUY, REFERENCE, 5)  # others trade, at the reference price
    trade(engine, BOB, BUY, REFERENCE, 3)

    dave = engine.accounts["dave"]
    assert (dave.cash, dave.starting_value, dave.realized_pnl) == (50_000, 150_000, 0)
    assert pnl(engine, "dave", marks) == 0 == realized_plus_unrealized(engine, "dave", marks)


def test_a_participant_who_never_traded_has_only_unrealized_pnl_when_the_mark_moves(engine):
    engine.create_account("dave", 50_000, now=1, grants=(Grant("ACME", 10, 0),))

    trade(engine, ALICE, BUY, 107, 5)  # the last trade, the new mark

    marks = {"ACME": 107}
    assert engine.accounts["dave"].realized_pnl == 0
    assert pnl(engine, "dave", marks) == 10 * 7 * TICK_CASH
    assert realized_plus_unrealized(engine, "dave", marks) == 10 * 7 * TICK_CASH


def test_realized_pnl_is_exact_through_partial_closes_and_a_flip_from_long_to_short(engine):
    position = engine.accounts[ALICE].position("ACME")
    trade(engine, ALICE, BUY, 100, 4)
    trade(engine, ALICE, BUY, 110, 4)
    assert (position.quantity, position.cost, position.realized_pnl) == (8, 84_000, 0)

    trade(engine, ALICE, SELL, 120, 2)  # closes 2 of 8 at an average of 1.05
    assert (position.quantity, position.cost, position.realized_pnl) == (6, 63_000, 3_000)

    engine.configure(ExchangeSettings(short_limit=10), now=2)
    trade(engine, ALICE, SELL, 100, 8)  # closes 6 at a loss of 0.05 each, opens 2 short at 1.00
    assert (position.quantity, position.cost, position.realized_pnl) == (-2, -20_000, 0)


def test_realized_pnl_is_exact_for_shorts_and_a_flip_from_short_to_long():
    engine = new_engine(short_limit=10)
    position = engine.accounts[ALICE].position("ACME")
    trade(engine, ALICE, SELL, 100, 4)
    trade(engine, ALICE, SELL, 106, 2)
    assert (position.quantity, position.cost, position.realized_pnl) == (-6, -61_200, 0)

    trade(engine, ALICE, BUY, 96, 3)  # covers 3 of 6 shorted at an average of 1.02
    assert (position.quantity, position.cost, position.realized_pnl) == (-3, -30_600, 1_800)

    trade(engine, ALICE, BUY, 104, 5)  # covers 3 at a loss of 0.02 each, opens 2 long at 1.04
    assert (position.quantity, position.cost, position.realized_pnl) == (2, 20_800, 1_200)

    trade(engine, ALICE, SELL, 104, 2)  # flat: nothing left to cost
    assert (position.quantity, position.cost, position.realized_pnl) == (0, 0, 1_200)
    assert engine.accounts[ALICE].cash - CASH == 1_200  # flat: realized P&L is the cash made


def test_an_inexact_average_is_carried_in_the_cost_so_a_flat_position_realized_it_all(engine):
    position = engine.accounts[ALICE].position("ACME")
    trade(engine, ALICE, BUY, 100, 2)
    trade(engine, ALICE, BUY, 101, 1)  # 3 for 3.01: an average of 1.00333...
    trade(engine, ALICE, SELL, 102, 1)
    # The closed third cost 100.33...: the engine takes 100.33 and leaves the rest in the cost.
    assert (position.quantity, position.cost, position.realized_pnl) == (2, 20_067, 167)
    trade(engine, ALICE, SELL, 102, 2)

    assert (position.quantity, position.cost) == (0, 0)
    assert position.realized_pnl == 3 * 102 * 100 - 30_100 == engine.accounts[ALICE].cash - CASH


@pytest.mark.parametrize("mark", [1, 95, 100, 113])
def test_pnl_identity_holds_in_integers_after_a_mixed_history(mark):
    engine = new_engine(short_limit=10)
    engine.create_account("dave", 50_000, now=1, grants=(Grant("ACME", 7, 97),))
    for user, side, price, quantity in [
        ("dave", SELL, 103, 3),
        ("dave", BUY, 99, 1),
        ("dave", SELL, 101, 9),
        ("dave", BUY, 98, 2),
        (ALICE, BUY, 102, 3),
        (ALICE, SELL, 99, 5),
    ]:
        trade(engine, user, side, price, quantity)
    engine.adjust_cash("dave", -1_234, now=9)

    for user in ("dave", ALICE, BOB):
        marks = {"ACME": mark}
        total = realized_plus_unrealized(engine, user, marks)
        assert type(total) is int
        assert pnl(engine, user, marks) == total, user


def test_adjust_cash_moves_starting_value_not_pnl(engine):
    engine.create_account("dave", 50_000, now=1, grants=(Grant("ACME", 10, 0),))
    trade(engine, "dave", SELL, 104, 4)
    marks = {"ACME": 104}
    before = pnl(engine, "dave", marks)
    assert before == 10 * 4 * TICK_CASH

    events = engine.adjust_cash("dave", 25_000, now=5)

    dave = engine.accounts["dave"]
    assert events == [CashAdjusted("", 0, 5, "dave", 25_000, dave.cash, dave.starting_value)]
    assert (dave.cash, dave.starting_value) == (50_000 + 41_600 + 25_000, 150_000 + 25_000)
    assert pnl(engine, "dave", marks) == before == realized_plus_unrealized(engine, "dave", marks)

    engine.adjust_cash("dave", -60_000, now=6)
    assert pnl(engine, "dave", marks) == before


def test_cash_adjusted_is_private_and_converts_to_its_proto(engine):
    adjusted = only(engine.adjust_cash(ALICE, -5_000, now=5), CashAdjusted)

    message = event_to_proto(adjusted)

    assert not isinstance(adjusted, EXCHANGE_WIDE)
    assert message.exchange_sequence == 0
    assert (message.cash_adjusted.amount_units, message.cash_adjusted.cash_units) == (
        -5_000,
        CASH - 5_000,
    )
    assert message.cash_adjusted.starting_value_units == CASH - 5_000


# ---- the exchange-wide sequence -------------------------------------------------------------


def exchange_wide(events: list) -> list[tuple[str, int]]:
    return [(type(e).__name__, e.exchange_sequence) for e in events if isinstance(e, EXCHANGE_WIDE)]


def test_exchange_sequence_is_contiguous_across_listings_accounts_days_halts_and_settings():
    engine = MatchingEngine(market_open=False)
    events = []
    events += engine.add_symbol("ACME", now=1)
    events += engine.add_symbol("BETA", now=1, tick_size="0.05")
    events += engine.create_account(ALICE, CASH, now=2)
    events += engine.open_market(now=3)
    events += engine.halt(now=4, symbol="ACME")
    events += engine.halt(now=4)  # halts BETA, the one not halted yet
    events += engine.resume(now=5, symbol="BETA")
    events += engine.resume(now=5)
    events += engine.configure(ExchangeSettings(short_limit=5), now=6)
    events += place(engine, MAKER, BUY, 100, 1)
    events += engine.close_market(now=7)
    events += engine.open_market(now=8)

    assert exchange_wide(events) == [
        ("SymbolAdded", 1),
        ("SymbolAdded", 2),
        ("AccountCreated", 3),
        ("TradingDayOpened", 4),
        ("TradingHalted", 5),
        ("TradingHalted", 6),
        ("TradingResumed", 7),
        ("TradingResumed", 8),
        ("SettingsChanged", 9),
        ("TradingDayClosed", 10),
        ("TradingDayOpened", 11),
    ]
    assert engine.exchange_sequence == 11
    assert all(
        e.sequence == (1 if isinstance(e, SymbolAdded) else 0)
        for e in events
        if isinstance(e, EXCHANGE_WIDE)
    )
    assert [
        event_to_proto(e).exchange_sequence for e in events if isinstance(e, EXCHANGE_WIDE)
    ] == (list(range(1, 12)))
    assert all(
        event_to_proto(e).exchange_sequence == 0 for e in events if not isinstance(e, EXCHANGE_WIDE)
    )


def test_a_halt_names_its_symbol_or_none_for_all(engine):
    engine.add_symbol("BETA", now=0)

    one = engine.halt(now=2, symbol="ACME")
    everything = engine.resume(now=3)

    assert [e for e in one if isinstance(e, EXCHANGE_WIDE)] == [
        TradingHalted("ACME", 0, 2, engine.exchange_sequence - 1)
    ]
    assert [e for e in everything if isinstance(e, EXCHANGE_WIDE)] == [
        TradingResumed("", 0, 3, engine.exchange_sequence)
    ]


@pytest.mark.parametrize(
    ("prepare", "command"),
    [
        (None, lambda e: e.open_market(now=5)),
        (None, lambda e: e.resume(now=5)),
        (None, lambda e: e.resume(now=5, symbol="ACME")),
        (lambda e: e.halt(now=4, symbol="ACME"), lambda e: e.halt(now=5, symbol="ACME")),
        (lambda e: e.halt(now=4), lambda e: e.halt(now=5)),
        (lambda e: e.halt(now=4, symbol="ACME"), lambda e: e.halt(now=5)),
        (lambda e: e.close_market(now=4), lambda e: e.close_market(now=5)),
        (None, lambda e: e.configure(e.settings, now=5)),
        (None, lambda e: e.configure(ExchangeSettings(), now=5)),
    ],
    ids=[
        "open when open",
        "resume all when none halted",
        "resume a running symbol",
        "halt a halted symbol",
        "halt all when all halted",
        "halt all when the only symbol is halted",
        "close when closed",
        "the same settings",
        "equal settings",
    ],
)
def test_a_command_that_changes_nothing_emits_nothing(engine, prepare, command):
    if prepare is not None:
        prepare(engine)
    exchange_sequence = engine.exchange_sequence

    assert command(engine) == []
    assert engine.exchange_sequence == exchange_sequence


def test_a_no_op_after_a_change_does_not_consume_an_exchange_sequence(engine):
    engine.halt(now=2, symbol="ACME")
    after_halt = engine.exchange_sequence

    assert engine.halt(now=3, symbol="ACME") == []
    assert engine.open_market(now=3) == []
    assert engine.exchange_sequence == after_halt
    assert exchange_wide(engine.resume(now=4)) == [("TradingResumed", after_halt + 1)]


def test_trading_day_events_bracket_the_day(engine):
    place(engine, tif=GFD)

    closed = engine.close_market(now=5)
    opened = engine.open_market(now=6)

    assert isinstance(closed[-1], TradingDayClosed)  # after the expiries it announces
    assert any(isinstance(e, OrderExpired) for e in closed)
    assert isinstance(opened[0], TradingDayOpened)  # before the new day's states and quotes


# ---- settings -------------------------------------------------------------------------------


def test_settings_change_emits_settings_changed_with_the_previous_values(engine):
    previous = engine.settings
    new = ExchangeSettings(rules_version=1, short_limit=5, max_open_orders=3)

    events = engine.configure(new, now=7)

    assert events == [SettingsChanged("", 0, 7, engine.exchange_sequence, new, previous)]
    assert engine.settings == new
    message = event_to_proto(events[0]).settings_changed
    assert (message.settings.short_limit, message.settings.max_open_orders) == (5, 3)
    assert message.settings.rules_version == 1
    assert (message.previous.short_limit, message.previous.max_open_orders) == (0, 0)


def test_a_raised_short_limit_takes_effect_for_the_next_order(engine):
    assert only(place(engine, ALICE, SELL, 100, 5), OrderRejected).reason == (
        Reason.INSUFFICIENT_POSITION
    )

    engine.configure(ExchangeSettings(short_limit=5), now=2)

    assert isinstance(place(engine, ALICE, SELL, 100, 5)[0], OrderAccepted)
    assert only(place(engine, ALICE, SELL, 100, 1), OrderRejected).reason == (
        Reason.INSUFFICIENT_POSITION
    )


def test_a_lowered_short_limit_leaves_resting_orders_and_rejects_the_next(engine):
    engine.configure(ExchangeSettings(short_limit=5), now=2)
    resting = place(engine, ALICE, SELL, 100, 3, order_id="short")

    engine.configure(ExchangeSettings(short_limit=0), now=3)

    assert isinstance(resting[0], OrderAccepted) and "short" in engine.open_orders
    assert only(place(engine, ALICE, SELL, 100, 1), OrderRejected).reason == (
        Reason.INSUFFICIENT_POSITION
    )


def test_an_open_order_cap_takes_effect_for_the_next_order(engine):
    place(engine, ALICE, BUY, 90)
    place(engine, ALICE, BUY, 91)

    engine.configure(ExchangeSettings(max_open_orders=2), now=2)

    assert only(place(engine, ALICE, BUY, 92), OrderRejected).reason == Reason.OPEN_ORDER_LIMIT
    assert len(engine.open_orders) == 2  # the orders already open stay
    engine.configure(ExchangeSettings(max_open_orders=3), now=3)
    assert isinstance(place(engine, ALICE, BUY, 92)[0], OrderAccepted)


# ---- events are values ----------------------------------------------------------------------


def test_order_events_carry_terms_as_an_immutable_value(engine):
    events = place(engine, client_order_id="c-9", order_id="v1", now=42)

    terms = events[0].order
    assert type(terms) is OrderTerms
    assert terms == ("v1", ALICE, "ACME", BUY, LIMIT, GFD, 100, 10, "c-9", 42)
    with pytest.raises(AttributeError):
        terms.price = 1  # type: ignore[misc]


def test_an_order_event_keeps_the_state_of_its_moment(engine):
    accepted = place(engine, ALICE, BUY, 100, 10, order_id="rest")[0]
    first_fill = place(engine, MAKER, SELL, 100, 4)
    second_fill = place(engine, MAKER, SELL, 100, 6)
    (filled_4,) = [
        e for e in first_fill if isinstance(e, OrderFilled) and e.order == accepted.order
    ]
    (filled_10,) = [
        e for e in second_fill if isinstance(e, OrderFilled) and e.order == accepted.order
    ]

    assert (filled_4.filled_quantity, filled_4.status) == (4, OrderStatus.PARTIALLY_FILLED)
    assert (filled_10.filled_quantity, filled_10.status) == (10, OrderStatus.FILLED)
    assert filled_4.filled_notional == 400 and filled_10.filled_notional == 1_000
    assert "rest" not in engine.open_orders
    # Converted now, long after: each still says what was true when it was emitted.
    assert event_to_proto(accepted).order_accepted.order.status == types_pb2.NEW
    assert event_to_proto(filled_4).order_filled.order.status == types_pb2.PARTIALLY_FILLED
    assert event_to_proto(filled_4).order_filled.order.filled_quantity == 4


def test_ioc_accepted_event_converts_as_new_with_no_reason(engine):
    """The bug this rewrite fixed: an IOC's accepted event was logged with its final state."""
    place(engine, MAKER, SELL, 100, 5)
    events = place(engine, ALICE, BUY, 101, 10, tif=IOC)
    accepted = events[0]
    expired = events[-1] if isinstance(events[-1], OrderExpired) else events[-2]

    message = event_to_proto(accepted).order_accepted.order

    assert isinstance(accepted, OrderAccepted)
    assert (message.status, message.reason) == (types_pb2.NEW, types_pb2.ORDER_REASON_UNSPECIFIED)
    assert (message.filled_quantity, message.filled_notional_ticks) == (0, 0)
    expired_message = event_to_proto(expired).order_expired.order
    assert (expired_message.status, expired_message.reason) == (
        types_pb2.EXPIRED,
        types_pb2.UNFILLED_REMAINDER,
    )
    assert expired_message.filled_quantity == 5


def test_fok_accepted_event_converts_as_new_though_it_expired_at_once(engine):
    events = place(engine, ALICE, BUY, 100, 10, tif=FOK)

    assert [type(e) for e in events] == [OrderAccepted, OrderExpired]
    assert event_to_proto(events[0]).order_accepted.order.status == types_pb2.NEW
    assert event_to_proto(events[0]).order_accepted.order.reason == 0
    assert event_to_proto(events[1]).order_expired.order.reason == types_pb2.FILL_OR_KILL


def test_cancelled_and_rejected_events_carry_their_reason_and_fills(engine):
    resting = place(engine, ALICE, BUY, 100, 10, order_id="partly")
    place(engine, MAKER, SELL, 100, 3)
    rejected = only(place(engine, "ghost"), OrderRejected)

    cancelled = only(
        [e for e in engine.cancel_order("partly", ALICE, now=3) if isinstance(e, OrderCancelled)],
        OrderCancelled,
    )

    assert isinstance(resting[0], OrderAccepted)
    assert (cancelled.reason, cancelled.filled_quantity, cancelled.filled_notional) == (
        Reason.CANCELLED_BY_OWNER,
        3,
        300,
    )
    message = event_to_proto(cancelled).order_cancelled.order
    assert (message.status, message.filled_quantity) == (types_pb2.CANCELLED, 3)
    assert rejected.reason == Reason.UNKNOWN_USER
    assert event_to_proto(rejected).order_rejected.order.status == types_pb2.REJECTED
