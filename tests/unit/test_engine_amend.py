"""Amending a resting order (docs/amend.md): what keeps its time priority and what loses it,
a new price that crosses, what the order holds, and every reason an amend is rejected.

The order keeps its id and creation time; its terms in every event after the amend carry the
new price and total quantity. A rejected amend changes nothing and is answered by an
AmendRejected with the reason and a message.
"""

from __future__ import annotations

import itertools

import pytest

from engine_svc.codec import restore_engine, snapshot_engine
from engine_svc.engine import MatchingEngine
from engine_svc.events import (
    AmendRejected,
    BookLevelChanged,
    OrderAmended,
    OrderCancelled,
    OrderFilled,
    QuoteChanged,
    TradeExecuted,
)
from engine_svc.orders import OrderStatus, OrderType, Reason, Side, TimeInForce
from engine_svc.rules import ExchangeSettings, fee

BUY, SELL = Side.BUY, Side.SELL
LIMIT, GFD, IOC = OrderType.LIMIT, TimeInForce.GFD, TimeInForce.IOC
CASH = 10_000_000  # 1,000.00
TICK_CASH = 100  # cash units per tick of 0.01

_ids = itertools.count(1)


def new_engine(**settings) -> MatchingEngine:
    engine = MatchingEngine(ExchangeSettings(rules_version=3, **settings), market_open=True)
    engine.add_symbol("ACME", now=0, reference_price=100)
    engine.add_symbol("LOTS", now=0, lot_size=10, reference_price=100)
    for user in ("alice", "bob", "carol"):
        engine.create_account(user, CASH, now=0)
        account = engine.accounts[user]
        for symbol in ("ACME", "LOTS"):
            account.position(symbol).quantity = 100
    return engine


def place(engine, user, side, price, quantity=10, symbol="ACME", now=1, tif=GFD) -> str:
    order_id = f"o{next(_ids)}"
    engine.place_order(order_id, user, symbol, side, LIMIT, tif, price, quantity, now)
    return order_id


def queue(engine, symbol="ACME", side=SELL) -> list[tuple[int, list[str]]]:
    """(price, order ids oldest first) per level, best first."""
    book_side = engine.symbols[symbol].book.side(side)
    return [(level.price, list(level.orders)) for level in book_side.iter_levels()]


def amended(events) -> OrderAmended:
    (event,) = [e for e in events if isinstance(e, OrderAmended)]
    return event


def rejection(events) -> tuple[Reason, str]:
    assert len(events) == 1 and isinstance(events[0], AmendRejected), events
    return events[0].reason, events[0].message


# ---- time priority -------------------------------------------------------------------------


def test_quantity_down_keeps_the_place_in_the_queue():
    engine = new_engine()
    first, second = place(engine, "alice", SELL, 101), place(engine, "bob", SELL, 101)
    events = engine.amend_order(first, "alice", None, 6, now=2)
    assert amended(events).priority_kept
    assert queue(engine) == [(101, [first, second])]
    assert engine.open_orders[first].remaining == 6
    assert [e for e in events if isinstance(e, BookLevelChanged)] == [
        BookLevelChanged("ACME", engine.symbols["ACME"].sequence - 1, 2, SELL, 101, 16, 2)
    ]
    place(engine, "carol", BUY, 101, 6, now=3)
    assert first not in engine.open_orders and engine.open_orders[second].remaining == 10


def test_quantity_up_goes_to_the_back_of_the_level():
    engine = new_engine()
    first, second = place(engine, "alice", SELL, 101), place(engine, "bob", SELL, 101)
    events = engine.amend_order(first, "alice", None, 15, now=2)
    assert not amended(events).priority_kept
    assert queue(engine) == [(101, [second, first])]
    assert engine.symbols["ACME"].book.asks.levels[101].quantity == 25


def test_a_new_price_goes_to_the_back_of_the_new_level():
    engine = new_engine()
    first = place(engine, "alice", SELL, 101)
    second = place(engine, "bob", SELL, 102)
    events = engine.amend_order(first, "alice", 102, None, now=2)
    assert not amended(events).priority_kept
    assert queue(engine) == [(102, [second, first])]
    levels = [(e.price, e.quantity) for e in events if isinstance(e, BookLevelChanged)]
    assert levels == [(101, 0), (102, 20)]


def test_a_new_price_with_a_smaller_quantity_loses_priority_too():
    engine = new_engine()
    first, second = place(engine, "alice", SELL, 102), place(engine, "bob", SELL, 101)
    engine.amend_order(first, "alice", 101, 5, now=2)
    assert queue(engine) == [(101, [second, first])]


def test_amending_back_to_the_old_price_does_not_restore_priority():
    engine = new_engine()
    first, second = place(engine, "alice", SELL, 101), place(engine, "bob", SELL, 101)
    engine.amend_order(first, "alice", 102, None, now=2)
    engine.amend_order(first, "alice", 101, None, now=3)
    assert queue(engine) == [(101, [second, first])]


def test_the_order_keeps_its_id_and_creation_time_and_shows_its_new_terms():
    engine = new_engine()
    order_id = place(engine, "alice", BUY, 99, now=5)
    event = amended(engine.amend_order(order_id, "alice", 98, 12, now=9))
    assert (event.order.order_id, event.order.created_at) == (order_id, 5)
    assert (event.order.price, event.order.quantity) == (98, 12)
    assert (event.old_price, event.old_quantity) == (99, 10)
    assert (event.status, event.filled_quantity, event.timestamp) == (OrderStatus.NEW, 0, 9)
    assert engine.open_orders[order_id].updated_at == 9


def test_quantity_is_the_new_total_filled_part_included():
    engine = new_engine()
    order_id = place(engine, "alice", SELL, 101)
    place(engine, "bob", BUY, 101, 4)
    event = amended(engine.amend_order(order_id, "alice", None, 7, now=3))
    assert (event.status, event.filled_quantity, event.order.quantity) == (
        OrderStatus.PARTIALLY_FILLED,
        4,
        7,
    )
    assert engine.open_orders[order_id].remaining == 3


def test_a_requeued_order_keeps_its_place_behind_others_through_a_snapshot():
    engine = new_engine()
    first, second = place(engine, "alice", SELL, 101), place(engine, "bob", SELL, 101)
    engine.amend_order(first, "alice", None, 12, now=2)
    restored = restore_engine(snapshot_engine(engine))
    assert queue(restored) == [(101, [second, first])]
    assert restored.open_orders[first].terms == engine.open_orders[first].terms


# ---- a new price that crosses ----------------------------------------------------------------


def test_a_crossing_price_trades_at_once_at_the_resting_price():
    engine = new_engine()
    ask = place(engine, "bob", SELL, 101, 5)
    bid = place(engine, "alice", BUY, 99, 5)
    events = engine.amend_order(bid, "alice", 102, None, now=2)
    kinds = [type(e) for e in events if not isinstance(e, (BookLevelChanged, QuoteChanged))]
    assert kinds == [OrderAmended, TradeExecuted, OrderFilled, OrderFilled]
    (trade,) = [e for e in events if isinstance(e, TradeExecuted)]
    assert (trade.price, trade.quantity, trade.aggressor_side) == (101, 5, BUY)
    assert (trade.buy_order_id, trade.sell_order_id) == (bid, ask)
    assert not engine.open_orders
    assert engine.accounts["alice"].reserved_cash == 0
    assert engine.accounts["alice"].cash == CASH - 5 * 101 * TICK_CASH


def test_a_crossing_remainder_rests_at_the_new_price():
    engine = new_engine()
    place(engine, "bob", SELL, 100, 3)
    bid = place(engine, "alice", BUY, 98, 8)
    engine.amend_order(bid, "alice", 100, None, now=2)
    assert queue(engine, side=BUY) == [(100, [bid])]
    order = engine.open_orders[bid]
    assert (order.filled_quantity, order.remaining, order.status) == (
        3,
        5,
        OrderStatus.PARTIALLY_FILLED,
    )
    assert order.reserved_cash == 5 * 100 * TICK_CASH


def test_a_crossing_amend_pays_the_taker_fee_as_an_incoming_order():
    engine = new_engine(maker_fee_centi_bps=100, taker_fee_centi_bps=500)
    place(engine, "bob", SELL, 101, 5)
    bid = place(engine, "alice", BUY, 99, 5)
    events = engine.amend_order(bid, "alice", 101, None, now=2)
    fees = {e.order.order_id: e.fee for e in events if isinstance(e, OrderFilled)}
    notional = 5 * 101 * TICK_CASH
    assert fees[bid] == fee(notional, 500)


def test_a_crossing_amend_cancels_the_owners_own_resting_orders_first():
    engine = new_engine()
    own = place(engine, "alice", SELL, 101, 5)
    other = place(engine, "bob", SELL, 101, 5)
    bid = place(engine, "alice", BUY, 99, 5)
    events = engine.amend_order(bid, "alice", 101, None, now=2)
    cancelled = [(e.order.order_id, e.reason) for e in events if isinstance(e, OrderCancelled)]
    assert cancelled == [(own, Reason.SELF_TRADE)]
    (trade,) = [e for e in events if isinstance(e, TradeExecuted)]
    assert trade.sell_order_id == other


# ---- what the order holds ----------------------------------------------------------------------


def test_a_buy_amended_up_holds_more_cash_and_down_gives_it_back():
    engine = new_engine()
    account = engine.accounts["alice"]
    bid = place(engine, "alice", BUY, 100, 10)
    assert account.reserved_cash == 10 * 100 * TICK_CASH
    engine.amend_order(bid, "alice", None, 20, now=2)
    assert account.reserved_cash == engine.open_orders[bid].reserved_cash == 20 * 100 * TICK_CASH
    engine.amend_order(bid, "alice", 50, None, now=3)
    assert account.reserved_cash == 20 * 50 * TICK_CASH
    engine.amend_order(bid, "alice", None, 4, now=4)
    assert account.reserved_cash == 4 * 50 * TICK_CASH
    assert account.position("ACME").buying == 4


def test_a_requeued_buy_holds_at_todays_worst_fee_and_one_kept_in_place_keeps_its_rate():
    engine = new_engine(taker_fee_centi_bps=100)
    bid = place(engine, "alice", BUY, 100, 10)
    engine.configure(ExchangeSettings(rules_version=3, taker_fee_centi_bps=300), now=2)
    engine.amend_order(bid, "alice", None, 8, now=3)
    notional = 8 * 100 * TICK_CASH
    assert engine.open_orders[bid].reserved_cash == notional + fee(notional, 100)
    engine.amend_order(bid, "alice", None, 9, now=4)
    notional = 9 * 100 * TICK_CASH
    assert engine.open_orders[bid].reserved_cash == notional + fee(notional, 300)
    assert engine.accounts["alice"].reserved_cash == notional + fee(notional, 300)


def test_a_sell_amended_holds_more_or_less_of_the_position():
    engine = new_engine()
    ask = place(engine, "alice", SELL, 101, 10)
    position = engine.accounts["alice"].position("ACME")
    engine.amend_order(ask, "alice", None, 30, now=2)
    assert position.reserved == 30
    engine.amend_order(ask, "alice", None, 5, now=3)
    assert position.reserved == 5


# ---- rejections ----------------------------------------------------------------------------------


def test_an_unknown_order_is_rejected():
    engine = new_engine()
    reason, message = rejection(engine.amend_order("nope", "alice", 100, None, now=2))
    assert reason == Reason.UNKNOWN_ORDER and "nope" in message


def test_a_finished_order_is_no_longer_open():
    engine = new_engine()
    ask = place(engine, "alice", SELL, 101, 5)
    place(engine, "bob", BUY, 101, 5)
    reason, _ = rejection(engine.amend_order(ask, "alice", 102, None, now=3))
    assert reason == Reason.UNKNOWN_ORDER


def test_another_users_order_is_rejected():
    engine = new_engine()
    ask = place(engine, "alice", SELL, 101)
    reason, _ = rejection(engine.amend_order(ask, "bob", 102, None, now=2))
    assert reason == Reason.NOT_ORDER_OWNER


@pytest.mark.parametrize(
    ("price", "quantity", "words"),
    [
        (None, None, "nothing to change"),
        (101, 10, "nothing to change"),
        (101, None, "nothing to change"),
        (0, None, "price must be positive"),
        (-5, None, "price must be positive"),
        (None, 0, "quantity must be"),
        (None, 1_000_001, "quantity must be"),
    ],
)
def test_invalid_amends_are_rejected_with_the_field_named(price, quantity, words):
    engine = new_engine()
    ask = place(engine, "alice", SELL, 101)
    reason, message = rejection(engine.amend_order(ask, "alice", price, quantity, now=2))
    assert reason == Reason.INVALID_ORDER and words in message


def test_a_quantity_off_the_lot_is_rejected():
    engine = new_engine()
    ask = place(engine, "alice", SELL, 101, 20, symbol="LOTS")
    reason, message = rejection(engine.amend_order(ask, "alice", None, 25, now=2))
    assert reason == Reason.INVALID_ORDER and "lot size 10" in message


def test_a_quantity_not_above_the_filled_part_is_rejected():
    engine = new_engine()
    ask = place(engine, "alice", SELL, 101, 10)
    place(engine, "bob", BUY, 101, 4)
    for quantity in (4, 3):
        reason, message = rejection(engine.amend_order(ask, "alice", None, quantity, now=3))
        assert reason == Reason.INVALID_ORDER and "above the 4 already filled" in message
    assert engine.open_orders[ask].remaining == 6


def test_amends_are_rejected_while_the_market_is_closed():
    engine = new_engine()
    ask = place(engine, "alice", SELL, 101, tif=TimeInForce.GTC)
    engine.close_market(now=2)
    reason, _ = rejection(engine.amend_order(ask, "alice", 102, None, now=3))
    assert reason == Reason.MARKET_CLOSED


def test_amends_are_rejected_while_the_symbol_is_halted():
    engine = new_engine()
    ask = place(engine, "alice", SELL, 101)
    engine.halt(now=2, symbol="ACME")
    reason, _ = rejection(engine.amend_order(ask, "alice", 102, None, now=3))
    assert reason == Reason.SYMBOL_HALTED
    assert queue(engine) == [(101, [ask])]


def test_a_buy_amended_beyond_the_available_cash_is_rejected_and_unchanged():
    engine = new_engine()
    bid = place(engine, "alice", BUY, 100, 10)
    reason, message = rejection(engine.amend_order(bid, "alice", None, 1_001, now=2))
    assert reason == Reason.INSUFFICIENT_CASH and "available cash" in message
    order = engine.open_orders[bid]
    assert (order.quantity, order.reserved_cash) == (10, 10 * 100 * TICK_CASH)
    assert engine.accounts["alice"].reserved_cash == 10 * 100 * TICK_CASH


def test_a_sell_amended_beyond_the_position_is_rejected():
    engine = new_engine()
    ask = place(engine, "alice", SELL, 101, 10)
    reason, message = rejection(engine.amend_order(ask, "alice", None, 101, now=2))
    assert reason == Reason.INSUFFICIENT_POSITION and "91 more to sell" in message
    assert engine.accounts["alice"].position("ACME").reserved == 10


def test_an_amend_over_the_position_limit_is_rejected():
    engine = new_engine(position_limit=120)
    bid = place(engine, "alice", BUY, 100, 10)
    reason, message = rejection(engine.amend_order(bid, "alice", None, 21, now=2))
    assert reason == Reason.POSITION_LIMIT and "position limit of 120" in message
    amended(engine.amend_order(bid, "alice", None, 20, now=3))


def test_a_rejected_amend_belongs_to_no_stream():
    engine = new_engine()
    ask = place(engine, "alice", SELL, 101)
    (event,) = engine.amend_order(ask, "bob", 102, None, now=2)
    assert (event.symbol, event.sequence, event.order_id, event.user_id) == ("ACME", 0, ask, "bob")


def test_an_immediate_order_never_rests_so_it_cannot_be_amended():
    engine = new_engine()
    order_id = f"o{next(_ids)}"
    engine.place_order(order_id, "alice", "ACME", SELL, LIMIT, IOC, 101, 5, 1)
    reason, _ = rejection(engine.amend_order(order_id, "alice", 102, None, now=2))
    assert reason == Reason.UNKNOWN_ORDER
