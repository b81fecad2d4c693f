"""Rules version 2: the position limit, one behaviour per test.

An order is REJECTED with POSITION_LIMIT when, counting every open order of its side (what open
BUYs could add, what open SELLs hold), it could take the position beyond +-limit.
"""

from __future__ import annotations

import itertools

from engine_svc.engine import MatchingEngine
from engine_svc.events import Grant, OrderAccepted, OrderRejected
from engine_svc.orders import OrderType, Reason, Side, TimeInForce
from engine_svc.rules import ExchangeSettings

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
GFD, IOC = TimeInForce.GFD, TimeInForce.IOC
CASH = 10_000_000
FLOW = ""

_ids = itertools.count(1)


def new_engine(grant: int = 0, **settings) -> MatchingEngine:
    """ACME and BETA; alice holds `grant` ACME shares."""
    engine = MatchingEngine(ExchangeSettings(rules_version=2, **settings), market_open=True)
    engine.add_symbol("ACME", now=0, reference_price=100)
    engine.add_symbol("BETA", now=0, reference_price=100)
    grants = (Grant("ACME", grant, 100),) if grant else ()
    engine.create_account("alice", CASH, now=0, grants=grants)
    return engine


def place(engine, side, quantity, price=100, user="alice", symbol="ACME", tif=GFD, type=LIMIT):
    order_id = f"o{next(_ids)}"
    return engine.place_order(order_id, user, symbol, side, type, tif, price, quantity, 1)


def outcome(events):
    first = events[0]
    if isinstance(first, OrderRejected):
        return first.reason
    assert isinstance(first, OrderAccepted), events
    return "accepted"


def test_a_buy_up_to_the_limit_is_accepted_and_one_beyond_is_rejected():
    engine = new_engine(position_limit=10)

    assert outcome(place(engine, BUY, 11)) == Reason.POSITION_LIMIT
    assert outcome(place(engine, BUY, 10)) == "accepted"


def test_open_buys_count_towards_the_limit():
    engine = new_engine(position_limit=10)
    assert outcome(place(engine, BUY, 6)) == "accepted"
    assert outcome(place(engine, BUY, 4, price=99)) == "accepted"

    assert outcome(place(engine, BUY, 1, price=98)) == Reason.POSITION_LIMIT
    assert engine.accounts["alice"].positions["ACME"].buying == 10


def test_a_cancelled_buy_no_longer_counts():
    engine = new_engine(position_limit=10)
    events = place(engine, BUY, 10)
    engine.cancel_order(events[0].order.order_id, "alice", now=2)

    assert engine.accounts["alice"].positions["ACME"].buying == 0
    assert outcome(place(engine, BUY, 10)) == "accepted"


def test_filled_buys_count_as_position():
    engine = new_engine(position_limit=10)
    place(engine, SELL, 7, user=FLOW)
    place(engine, BUY, 7, tif=IOC)
    position = engine.accounts["alice"].positions["ACME"]
    assert (position.quantity, position.buying) == (7, 0)

    assert outcome(place(engine, BUY, 4)) == Reason.POSITION_LIMIT
    assert outcome(place(engine, BUY, 3)) == "accepted"


def test_a_partly_filled_buy_counts_its_fill_and_its_remainder():
    engine = new_engine(position_limit=10)
    place(engine, SELL, 3, user=FLOW)
    place(engine, BUY, 8)  # 3 filled, 5 resting
    position = engine.accounts["alice"].positions["ACME"]
    assert (position.quantity, position.buying) == (3, 5)

    assert outcome(place(engine, BUY, 3, price=99)) == Reason.POSITION_LIMIT
    assert outcome(place(engine, BUY, 2, price=99)) == "accepted"


def test_selling_makes_room_for_buys_again():
    engine = new_engine(position_limit=10, grant=10)
    assert outcome(place(engine, BUY, 1)) == Reason.POSITION_LIMIT
    place(engine, BUY, 4, user=FLOW)
    place(engine, SELL, 4, tif=IOC)  # position 6

    assert outcome(place(engine, BUY, 5)) == Reason.POSITION_LIMIT
    assert outcome(place(engine, BUY, 4)) == "accepted"


def test_a_sell_beyond_the_short_side_of_the_limit_is_rejected_before_the_short_limit():
    engine = new_engine(position_limit=10, short_limit=20)

    assert outcome(place(engine, SELL, 11)) == Reason.POSITION_LIMIT
    assert outcome(place(engine, SELL, 10)) == "accepted"


def test_open_sells_count_towards_the_short_side_of_the_limit():
    engine = new_engine(position_limit=10, short_limit=20, grant=5)
    assert outcome(place(engine, SELL, 9)) == "accepted"
    assert outcome(place(engine, SELL, 6, price=101)) == "accepted"  # 5 - 15 = -10

    assert outcome(place(engine, SELL, 1, price=102)) == Reason.POSITION_LIMIT
    assert engine.accounts["alice"].positions["ACME"].reserved == 15


def test_a_short_position_from_fills_counts_towards_the_limit():
    engine = new_engine(position_limit=10, short_limit=20)
    place(engine, BUY, 8, user=FLOW)
    place(engine, SELL, 8, tif=IOC)
    assert engine.accounts["alice"].positions["ACME"].quantity == -8

    assert outcome(place(engine, SELL, 3)) == Reason.POSITION_LIMIT
    assert outcome(place(engine, SELL, 2)) == "accepted"


def test_buys_do_not_count_against_the_short_side_nor_sells_against_the_long_side():
    engine = new_engine(position_limit=10, short_limit=20)
    assert outcome(place(engine, BUY, 10, price=90)) == "accepted"

    assert outcome(place(engine, SELL, 10, price=110)) == "accepted"


def test_a_position_above_the_limit_from_grants_may_still_be_sold():
    engine = new_engine(position_limit=10, grant=30)

    assert outcome(place(engine, BUY, 1)) == Reason.POSITION_LIMIT
    assert outcome(place(engine, SELL, 30)) == "accepted"


def test_the_limit_is_per_symbol():
    engine = new_engine(position_limit=10)
    assert outcome(place(engine, BUY, 10)) == "accepted"

    assert outcome(place(engine, BUY, 10, symbol="BETA")) == "accepted"


def test_a_market_buy_counts_its_whole_quantity():
    engine = new_engine(position_limit=10)
    place(engine, SELL, 20, user=FLOW)

    assert outcome(place(engine, BUY, 11, price=0, type=MARKET, tif=IOC)) == Reason.POSITION_LIMIT
    assert outcome(place(engine, BUY, 10, price=0, type=MARKET, tif=IOC)) == "accepted"
    assert engine.accounts["alice"].positions["ACME"].quantity == 10


def test_no_limit_when_it_is_zero():
    engine = new_engine(position_limit=0)

    assert outcome(place(engine, BUY, 1_000, price=1)) == "accepted"


def test_user_less_orders_have_no_limit():
    engine = new_engine(position_limit=10)

    assert outcome(place(engine, BUY, 1_000, user=FLOW)) == "accepted"
