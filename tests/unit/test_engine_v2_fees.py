"""Rules version 2: fees, one behaviour per test, with exact integer figures.

Fees are in hundredths of a basis point of an execution's notional (cash units), rounded toward
zero: the resting order pays the maker fee, the incoming one the taker fee, a user-less order
none. They leave the accounts into `engine.fees_collected`, so cash plus fees collected is
conserved. A BUY holds cash for its limit plus the worst fee, given back as it fills.
"""

from __future__ import annotations

import itertools

from engine_svc.engine import MatchingEngine
from engine_svc.events import Grant, OrderAccepted, OrderFilled, OrderRejected, TradeExecuted
from engine_svc.orders import OrderStatus, OrderType, Reason, Side, TimeInForce
from engine_svc.rules import ExchangeSettings, fee

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
GFD, IOC, GTC = TimeInForce.GFD, TimeInForce.IOC, TimeInForce.GTC
CASH = 10_000_000  # 1,000.00 in cash units
TICK_CASH = 100  # cash units per tick of 0.01
FLOW = ""  # a user-less flow

_ids = itertools.count(1)


def new_engine(**settings) -> MatchingEngine:
    """ACME (tick 0.01, reference 1.00); alice holds 1,000 shares, bob none; both funded."""
    engine = MatchingEngine(ExchangeSettings(rules_version=2, **settings), market_open=True)
    engine.add_symbol("ACME", now=0, reference_price=100)
    engine.create_account("alice", CASH, now=0, grants=(Grant("ACME", 1_000, 100),))
    engine.create_account("bob", CASH, now=0)
    return engine


def place(engine, user, side, price, quantity, type=LIMIT, tif=GFD, order_id="", now=1):
    order_id = order_id or f"o{next(_ids)}"
    return engine.place_order(order_id, user, "ACME", side, type, tif, price, quantity, now)


def fills(events) -> dict[str, list[int]]:
    """order id -> the fee of each of its OrderFilled events."""
    result: dict[str, list[int]] = {}
    for event in events:
        if isinstance(event, OrderFilled):
            result.setdefault(event.order.order_id, []).append(event.fee)
    return result


def total_cash(engine) -> int:
    return sum(account.cash for account in engine.accounts.values())


# ---- the fee function ------------------------------------------------------------------------


def test_fee_is_notional_times_rate_over_a_million():
    assert fee(1_000_000, 20) == 20
    assert fee(1_000_000, 0) == 0
    assert fee(0, 50) == 0


def test_fee_rounds_toward_zero_for_fees_and_rebates_alike():
    assert fee(10_000, 150) == 1  # 1.5 -> 1
    assert fee(10_000, -150) == -1  # -1.5 -> -1, not -2
    assert fee(9_999, 100) == 0  # 0.9999 -> 0
    assert fee(9_999, -100) == 0


def test_worst_fee_is_the_highest_rate_and_never_below_zero():
    def worst(maker: int, taker: int) -> int:
        settings = ExchangeSettings(maker_fee_centi_bps=maker, taker_fee_centi_bps=taker)
        return settings.worst_fee_centi_bps

    assert worst(20, 50) == 50
    assert worst(70, 50) == 70
    assert worst(-20, 0) == 0
    assert worst(-20, -5) == 0


# ---- one execution -----------------------------------------------------------------------------


def test_one_execution_charges_the_maker_and_the_taker_fee():
    engine = new_engine(maker_fee_centi_bps=20, taker_fee_centi_bps=50)
    place(engine, "alice", SELL, 100, 100, order_id="maker")

    events = place(engine, "bob", BUY, 100, 100, order_id="taker")

    # notional 100 x 100 ticks x 100 = 1,000,000 cash units: maker 20, taker 50
    assert fills(events) == {"maker": [20], "taker": [50]}
    alice, bob = engine.accounts["alice"], engine.accounts["bob"]
    assert alice.cash == CASH + 1_000_000 - 20
    assert bob.cash == CASH - 1_000_000 - 50
    assert (alice.fees_paid, bob.fees_paid) == (20, 50)
    assert engine.fees_collected == 70
    assert bob.reserved_cash == 0


def test_the_incoming_order_is_the_taker_whatever_its_side():
    engine = new_engine(maker_fee_centi_bps=20, taker_fee_centi_bps=50)
    place(engine, "bob", BUY, 100, 100, order_id="maker")

    events = place(engine, "alice", SELL, 100, 100, order_id="taker")

    assert fills(events) == {"maker": [20], "taker": [50]}
    assert engine.accounts["alice"].cash == CASH + 1_000_000 - 50
    assert engine.accounts["bob"].cash == CASH - 1_000_000 - 20


def test_a_negative_maker_fee_is_a_rebate_out_of_the_fee_account():
    engine = new_engine(maker_fee_centi_bps=-10, taker_fee_centi_bps=30)
    place(engine, "alice", SELL, 100, 100, order_id="maker")

    events = place(engine, "bob", BUY, 100, 100, order_id="taker")

    assert fills(events) == {"maker": [-10], "taker": [30]}
    assert engine.accounts["alice"].cash == CASH + 1_000_000 + 10
    assert engine.accounts["alice"].fees_paid == -10
    assert engine.fees_collected == 20


def test_a_rebate_rounds_toward_zero():
    engine = new_engine(maker_fee_centi_bps=-150, taker_fee_centi_bps=150)
    place(engine, "alice", SELL, 100, 1, order_id="maker")

    events = place(engine, "bob", BUY, 100, 1, order_id="taker")

    # notional 10,000: 1.5 units each way, rounded toward zero
    assert fills(events) == {"maker": [-1], "taker": [1]}
    assert engine.fees_collected == 0


def test_each_execution_is_charged_on_its_own_notional():
    engine = new_engine(taker_fee_centi_bps=150)
    place(engine, FLOW, SELL, 100, 1)
    place(engine, FLOW, SELL, 101, 1)

    events = place(engine, "bob", BUY, 101, 2, order_id="taker")

    # 10,000 x 150 / 1e6 = 1.5 -> 1 and 10,100 x 150 / 1e6 = 1.515 -> 1 (not 20,100 -> 3)
    assert fills(events)["taker"] == [1, 1]
    assert engine.accounts["bob"].cash == CASH - 20_100 - 2


def test_user_less_orders_pay_no_fee():
    engine = new_engine(maker_fee_centi_bps=20, taker_fee_centi_bps=50)
    place(engine, FLOW, SELL, 100, 100, order_id="flow-maker")
    events = place(engine, "bob", BUY, 100, 100, order_id="taker")
    place(engine, "alice", SELL, 100, 100, order_id="maker")
    events += place(engine, FLOW, BUY, 100, 100, order_id="flow-taker")

    assert fills(events) == {
        "flow-maker": [0],
        "taker": [50],
        "maker": [20],
        "flow-taker": [0],
    }
    assert engine.fees_collected == 70


def test_trades_between_user_less_orders_collect_nothing():
    engine = new_engine(maker_fee_centi_bps=20, taker_fee_centi_bps=50)
    place(engine, FLOW, SELL, 100, 100)

    events = place(engine, FLOW, BUY, 100, 100)

    assert all(fee_ == 0 for fees in fills(events).values() for fee_ in fees)
    assert engine.fees_collected == 0


def test_cash_plus_fees_collected_is_conserved_over_a_sequence():
    engine = new_engine(maker_fee_centi_bps=-7, taker_fee_centi_bps=33)
    engine.create_account("carol", CASH, now=0, grants=(Grant("ACME", 500, 100),))
    before = total_cash(engine)
    steps = [
        ("alice", SELL, 101, 37, GTC),
        ("bob", BUY, 102, 20, GFD),
        ("carol", SELL, 99, 45, GFD),
        ("bob", BUY, 103, 70, IOC),
        ("carol", BUY, 98, 13, GFD),
        ("alice", SELL, 97, 29, IOC),
        ("bob", BUY, 101, 11, GFD),
        ("carol", SELL, 100, 50, GFD),
    ]
    traded = 0
    for user, side, price, quantity, tif in steps:
        events = place(engine, user, side, price, quantity, tif=tif)
        traded += sum(e.quantity for e in events if isinstance(e, TradeExecuted))
        assert total_cash(engine) + engine.fees_collected == before

    assert traded > 0 and engine.fees_collected != 0
    assert engine.fees_collected == sum(a.fees_paid for a in engine.accounts.values())


# ---- what a BUY holds ------------------------------------------------------------------------


def test_a_buy_that_cannot_afford_the_worst_fee_is_insufficient_cash():
    engine = new_engine(maker_fee_centi_bps=20, taker_fee_centi_bps=50)
    engine.create_account("dan", 1_000_000, now=0)

    events = place(engine, "dan", BUY, 100, 100)  # 1,000,000 + a worst fee of 50

    assert isinstance(events[0], OrderRejected)
    assert events[0].reason == Reason.INSUFFICIENT_CASH
    assert engine.accounts["dan"].reserved_cash == 0


def test_a_buy_that_can_afford_price_plus_worst_fee_exactly_is_accepted():
    engine = new_engine(maker_fee_centi_bps=20, taker_fee_centi_bps=50)
    engine.create_account("dan", 1_000_050, now=0)

    events = place(engine, "dan", BUY, 100, 100, order_id="dan-1")

    assert isinstance(events[0], OrderAccepted)
    assert engine.open_orders["dan-1"].reserved_cash == 1_000_050
    assert engine.accounts["dan"].reserved_cash == 1_000_050


def test_the_worst_fee_is_the_maker_fee_when_it_is_the_higher():
    engine = new_engine(maker_fee_centi_bps=80, taker_fee_centi_bps=50)

    place(engine, "bob", BUY, 100, 100, order_id="b")

    assert engine.open_orders["b"].reserved_cash == 1_000_080


def test_a_rebate_is_never_counted_on_to_afford_a_buy():
    engine = new_engine(maker_fee_centi_bps=-50, taker_fee_centi_bps=-50)
    engine.create_account("dan", 999_999, now=0)

    events = place(engine, "dan", BUY, 100, 100)

    assert events[0].reason == Reason.INSUFFICIENT_CASH


def test_a_market_buy_holds_the_book_cost_plus_the_worst_fee():
    engine = new_engine(maker_fee_centi_bps=20, taker_fee_centi_bps=50)
    place(engine, FLOW, SELL, 100, 60)
    place(engine, FLOW, SELL, 101, 40)
    engine.create_account("dan", 1_004_000 + 50, now=0)  # 60 x 10,000 + 40 x 10,100 + fee 50

    events = place(engine, "dan", BUY, 0, 100, type=MARKET, tif=IOC, order_id="dan-m")

    assert fills(events)["dan-m"] == [30, 20]  # 600,000 and 404,000 at 50 centi-bps
    dan = engine.accounts["dan"]
    assert dan.cash == 1_004_050 - 1_004_000 - 50
    assert dan.reserved_cash == 0
    assert engine.accounts["dan"].positions["ACME"].buying == 0


def test_a_market_buy_one_unit_short_of_the_fee_is_insufficient_cash():
    engine = new_engine(maker_fee_centi_bps=20, taker_fee_centi_bps=50)
    place(engine, FLOW, SELL, 100, 100)
    engine.create_account("dan", 1_000_049, now=0)

    events = place(engine, "dan", BUY, 0, 100, type=MARKET, tif=IOC)

    assert events[0].reason == Reason.INSUFFICIENT_CASH


def test_reservation_with_fees_goes_back_to_zero_after_partial_fills_and_a_cancel():
    engine = new_engine(maker_fee_centi_bps=20, taker_fee_centi_bps=50)
    place(engine, "bob", BUY, 100, 10, order_id="b")
    bob, order = engine.accounts["bob"], engine.open_orders["b"]
    assert order.reserved_cash == bob.reserved_cash == 100_000 + 5

    place(engine, FLOW, SELL, 100, 3)
    # The order keeps what its remainder could cost at its limit and the worst fee (50).
    assert order.reserved_cash == bob.reserved_cash == 70_000 + 3
    place(engine, FLOW, SELL, 100, 3)
    assert order.reserved_cash == bob.reserved_cash == 40_000 + 2
    assert bob.positions["ACME"].buying == 4

    engine.cancel_order("b", "bob", now=2)

    assert bob.reserved_cash == 0 and order.reserved_cash == 0
    assert bob.positions["ACME"].buying == 0
    assert bob.cash == CASH - 60_000


def test_a_buy_filled_at_a_better_price_gives_back_the_difference_and_its_fee():
    engine = new_engine(taker_fee_centi_bps=50)
    place(engine, FLOW, SELL, 90, 100)

    events = place(engine, "bob", BUY, 100, 100, tif=GTC, order_id="b")

    assert fills(events)["b"] == [45]  # 900,000 x 50 / 1e6
    bob = engine.accounts["bob"]
    assert bob.cash == CASH - 900_000 - 45
    assert bob.reserved_cash == 0
    assert events[-1].last == 90


def test_a_fully_filled_resting_buy_holds_nothing():
    engine = new_engine(maker_fee_centi_bps=20, taker_fee_centi_bps=50)
    place(engine, "bob", BUY, 100, 7, order_id="b")

    events = place(engine, FLOW, SELL, 100, 7)

    filled = [e for e in events if isinstance(e, OrderFilled) and e.order.order_id == "b"]
    assert [(e.status, e.fee) for e in filled] == [(OrderStatus.FILLED, 1)]  # 70,000 x 20 / 1e6
    bob = engine.accounts["bob"]
    assert bob.reserved_cash == 0
    assert bob.cash == CASH - 70_000 - 1


def test_a_sell_holds_no_cash_for_its_fee():
    engine = new_engine(maker_fee_centi_bps=20, taker_fee_centi_bps=50)
    engine.create_account("eve", 0, now=0, grants=(Grant("ACME", 100, 100),))

    events = place(engine, "eve", SELL, 100, 100, order_id="e")

    assert isinstance(events[0], OrderAccepted)
    place(engine, FLOW, BUY, 100, 100)
    assert engine.accounts["eve"].cash == 1_000_000 - 20


def test_a_resting_order_pays_the_maker_fee_it_was_accepted_at():
    """Its cash was held for the fees of then: a fee raised while it rests does not apply."""
    engine = MatchingEngine(ExchangeSettings(rules_version=2), market_open=True)
    engine.add_symbol("ACME", now=0, reference_price=100)
    engine.create_account("bob", 20_000, now=0)
    place(engine, "bob", BUY, 100, 1, order_id="b1")
    place(engine, "bob", BUY, 100, 1, order_id="b2")  # 20,000 held: all of bob's cash
    engine.configure(ExchangeSettings(rules_version=2, maker_fee_centi_bps=100_000), now=2)

    first = place(engine, FLOW, SELL, 100, 1, now=3)
    bob = engine.accounts["bob"]
    assert bob.reserved_cash == engine.open_orders["b2"].reserved_cash == 10_000 == bob.cash
    second = place(engine, FLOW, SELL, 100, 1, now=4)

    assert fills(first)["b1"] == fills(second)["b2"] == [0]
    assert (bob.cash, bob.reserved_cash, engine.fees_collected) == (0, 0, 0)


def test_an_order_accepted_after_a_fee_change_pays_the_new_fee():
    engine = new_engine()
    engine.configure(ExchangeSettings(rules_version=2, maker_fee_centi_bps=100_000), now=2)
    place(engine, "bob", BUY, 100, 1, order_id="b", now=3)
    assert engine.open_orders["b"].reserved_cash == 11_000  # 10,000 + 10 %

    events = place(engine, FLOW, SELL, 100, 1, now=4)

    assert fills(events)["b"] == [1_000]
    assert engine.accounts["bob"].reserved_cash == 0


def test_after_a_partial_fill_a_buy_holds_what_its_remainder_could_cost():
    engine = new_engine(maker_fee_centi_bps=20, taker_fee_centi_bps=150)
    place(engine, "bob", BUY, 100, 3, order_id="b")  # 30,000 + 4 (4.5 rounded down)
    order = engine.open_orders["b"]

    place(engine, FLOW, SELL, 100, 1)

    # 2 x 100 x 100 at its limit, plus the fee at the worst rate (3 of 3.0).
    assert order.reserved_cash == 20_000 + 3


def test_a_partial_fill_never_leaves_an_account_holding_more_cash_than_it_has():
    engine = new_engine(maker_fee_centi_bps=38, taker_fee_centi_bps=38)
    engine.create_account("dan", 50_001, now=0)
    place(engine, "dan", BUY, 100, 5, order_id="d")  # 50,000 + 1 (1.9 rounded down): all of it

    events = place(engine, FLOW, SELL, 100, 3, tif=IOC)

    # The fill costs 30,000 + 1 (1.14 rounded down); 50,001 x 3 // 5 = 30,000 is given back.
    assert fills(events)["d"] == [1]
    dan = engine.accounts["dan"]
    assert dan.cash == 20_000
    assert dan.reserved_cash <= dan.cash
