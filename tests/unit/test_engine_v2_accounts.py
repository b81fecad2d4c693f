"""Rules version 2: roles, disabling and enabling users, API keys, cancel-all and news.

Commands about an account that does not exist are refused with UNKNOWN_ACCOUNT and change
nothing; news naming a symbol that is not listed, or without a headline, is refused.
"""

from __future__ import annotations

import itertools

import pytest

from engine_svc.accounts import BOT, PARTICIPANT
from engine_svc.engine import MatchingEngine
from engine_svc.events import (
    EXCHANGE_WIDE,
    AccountCreated,
    ApiKeyChanged,
    BookLevelChanged,
    CommandRefused,
    Grant,
    NewsPublished,
    NewsShock,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    QuoteChanged,
    UserDisabled,
    UserEnabled,
)
from engine_svc.orders import OrderType, Reason, Refusal, Side, TimeInForce
from engine_svc.rules import ExchangeSettings

BUY, SELL = Side.BUY, Side.SELL
LIMIT, GFD, GTC = OrderType.LIMIT, TimeInForce.GFD, TimeInForce.GTC
CASH = 10_000_000
FLOW = ""
SHOCK = NewsShock(-0.05, 2.0, 60.0)

_ids = itertools.count(1)


def new_engine() -> MatchingEngine:
    engine = MatchingEngine(ExchangeSettings(rules_version=2), market_open=True)
    engine.add_symbol("ACME", now=0, reference_price=100)
    engine.add_symbol("BETA", now=0, reference_price=50)
    grants = (Grant("ACME", 100, 0), Grant("BETA", 100, 0))
    engine.create_account("alice", CASH, now=0, grants=grants)
    engine.create_account("bob", CASH, now=0, grants=grants)
    return engine


def place(engine, user, side, price, quantity=5, symbol="ACME", order_id="", now=1):
    order_id = order_id or f"o{next(_ids)}"
    return engine.place_order(order_id, user, symbol, side, LIMIT, GFD, price, quantity, now)


def cancelled(events) -> list[tuple[str, Reason]]:
    return [(e.order.order_id, e.reason) for e in events if isinstance(e, OrderCancelled)]


def holds_nothing(engine, user) -> bool:
    account = engine.accounts[user]
    return account.reserved_cash == 0 and all(
        position.reserved == position.buying == 0 for position in account.positions.values()
    )


# ---- roles -----------------------------------------------------------------------------------


def test_participants_are_ranked_bots_and_admins_are_not():
    engine = new_engine()
    bot_created = engine.create_account("bot-1", CASH, now=0, role=BOT)
    engine.create_account("ops", 0, now=0, admin=True)

    assert bot_created[0].role == BOT
    assert engine.accounts["alice"].role == PARTICIPANT
    assert [user for user, a in engine.accounts.items() if a.ranked] == ["alice", "bob"]
    assert list(engine.scores) == ["alice", "bob"]


def test_a_bot_trades_like_anyone():
    engine = new_engine()
    engine.create_account("bot-1", CASH, now=0, grants=(Grant("ACME", 10, 0),), role=BOT)
    place(engine, "bot-1", SELL, 100, 10)

    events = place(engine, "alice", BUY, 100, 10)

    assert engine.accounts["bot-1"].positions["ACME"].quantity == 0
    assert engine.accounts["alice"].positions["ACME"].quantity == 110
    assert isinstance(events[0], OrderAccepted)


# ---- disable and enable ------------------------------------------------------------------------


def test_disabling_a_user_cancels_every_open_order_by_admin_then_says_so():
    engine = new_engine()
    place(engine, "alice", BUY, 99, order_id="a-acme-buy")
    place(engine, "alice", SELL, 101, order_id="a-acme-sell")
    place(engine, "alice", BUY, 49, symbol="BETA", order_id="a-beta-buy")
    place(engine, "bob", BUY, 98, order_id="b-acme-buy")

    events = engine.disable_user("alice", now=2)

    assert sorted(cancelled(events)) == [
        ("a-acme-buy", Reason.CANCELLED_BY_ADMIN),
        ("a-acme-sell", Reason.CANCELLED_BY_ADMIN),
        ("a-beta-buy", Reason.CANCELLED_BY_ADMIN),
    ]
    assert events[-1] == UserDisabled("", 0, 2, "alice")
    assert {type(e) for e in events} == {
        BookLevelChanged,
        OrderCancelled,
        QuoteChanged,
        UserDisabled,
    }
    assert list(engine.open_orders) == ["b-acme-buy"]
    assert holds_nothing(engine, "alice")
    assert engine.open_order_counts["alice"] == 0
    assert engine.accounts["alice"].disabled


def test_a_disabled_user_is_rejected_user_disabled():
    engine = new_engine()
    engine.disable_user("alice", now=2)

    events = place(engine, "alice", BUY, 100, now=3)

    assert len(events) == 1 and isinstance(events[0], OrderRejected)
    assert events[0].reason == Reason.USER_DISABLED


def test_a_disabled_user_is_rejected_before_any_other_account_check():
    engine = new_engine()
    engine.disable_user("alice", now=2)

    events = place(engine, "alice", BUY, 100, quantity=1_000_000, now=3)  # unaffordable too

    assert events[0].reason == Reason.USER_DISABLED


def test_disabling_twice_emits_nothing_the_second_time():
    engine = new_engine()
    engine.disable_user("alice", now=2)

    assert engine.disable_user("alice", now=3) == []


def test_enabling_a_disabled_user_lets_them_trade_again():
    engine = new_engine()
    engine.disable_user("alice", now=2)

    assert engine.enable_user("alice", now=3) == [UserEnabled("", 0, 3, "alice")]
    assert isinstance(place(engine, "alice", BUY, 100, now=4)[0], OrderAccepted)


def test_enabling_a_user_who_is_not_disabled_emits_nothing():
    engine = new_engine()

    assert engine.enable_user("alice", now=2) == []


def test_a_disabled_users_resting_orders_never_trade():
    engine = new_engine()
    place(engine, "alice", SELL, 100, order_id="a-sell")
    engine.disable_user("alice", now=2)

    events = place(engine, "bob", BUY, 100, now=3, order_id="b-buy")

    assert [type(e) for e in events][0] is OrderAccepted
    assert "b-buy" in engine.open_orders and "a-sell" not in engine.open_orders


@pytest.mark.parametrize("command", ["disable_user", "enable_user"])
def test_disable_or_enable_of_an_unknown_user_is_refused(command):
    engine = new_engine()

    events = getattr(engine, command)("ghost", now=2)

    assert len(events) == 1 and isinstance(events[0], CommandRefused)
    assert (events[0].reason, events[0].user_id) == (Refusal.UNKNOWN_ACCOUNT, "ghost")


def test_user_events_are_private_with_no_sequence():
    engine = new_engine()
    before = engine.exchange_sequence

    events = engine.disable_user("alice", 2) + engine.enable_user("alice", 3)
    events += engine.set_api_key("alice", "k", 4)

    assert [type(e) for e in events] == [UserDisabled, UserEnabled, ApiKeyChanged]
    assert all(e.sequence == 0 and not isinstance(e, EXCHANGE_WIDE) for e in events)
    assert engine.exchange_sequence == before


# ---- API keys -------------------------------------------------------------------------------


def test_set_api_key_replaces_the_key_and_names_the_previous_one():
    engine = MatchingEngine(ExchangeSettings(rules_version=2))
    engine.create_account("alice", CASH, now=0, api_key_sha256="old")

    events = engine.set_api_key("alice", "new", now=1)

    assert events == [ApiKeyChanged("", 0, 1, "alice", "old", "new", False)]
    assert engine.accounts["alice"].api_key_sha256 == "new"


def test_an_empty_api_key_revokes_it():
    engine = MatchingEngine(ExchangeSettings(rules_version=2))
    engine.create_account("ops", 0, now=0, admin=True, api_key_sha256="old")

    events = engine.set_api_key("ops", "", now=1)

    assert events == [ApiKeyChanged("", 0, 1, "ops", "old", "", True)]
    assert engine.accounts["ops"].api_key_sha256 == ""


def test_set_api_key_of_an_unknown_user_is_refused():
    engine = new_engine()

    events = engine.set_api_key("ghost", "k", now=1)

    assert [(e.reason, e.user_id) for e in events] == [(Refusal.UNKNOWN_ACCOUNT, "ghost")]
    assert "ghost" not in engine.accounts


# ---- cancel all --------------------------------------------------------------------------------


def test_cancel_all_of_one_symbol_leaves_the_others():
    engine = new_engine()
    place(engine, "alice", BUY, 99, order_id="a-acme")
    place(engine, "alice", SELL, 51, symbol="BETA", order_id="a-beta")
    place(engine, "bob", BUY, 98, order_id="b-acme")

    events = engine.cancel_all("alice", "ACME", now=2)

    assert cancelled(events) == [("a-acme", Reason.CANCELLED_BY_OWNER)]
    assert sorted(engine.open_orders) == ["a-beta", "b-acme"]
    assert engine.accounts["alice"].reserved_cash == 0
    assert engine.accounts["alice"].positions["BETA"].reserved == 5


def test_cancel_all_of_every_symbol():
    engine = new_engine()
    place(engine, "alice", BUY, 99, order_id="a-acme")
    place(engine, "alice", SELL, 51, symbol="BETA", order_id="a-beta")
    place(engine, "bob", BUY, 98, order_id="b-acme")

    events = engine.cancel_all("alice", "", now=2)

    assert cancelled(events) == [
        ("a-acme", Reason.CANCELLED_BY_OWNER),
        ("a-beta", Reason.CANCELLED_BY_OWNER),
    ]
    assert list(engine.open_orders) == ["b-acme"]
    assert holds_nothing(engine, "alice")
    # One quote per symbol whose top of book changed, after the cancels.
    quotes = [e.symbol for e in events if isinstance(e, QuoteChanged)]
    assert quotes == ["ACME", "BETA"]
    assert isinstance(events[-1], QuoteChanged)


def test_cancel_all_by_an_admin_says_cancelled_by_admin():
    engine = new_engine()
    place(engine, "alice", BUY, 99, order_id="a-acme")

    events = engine.cancel_all("alice", "", now=2, is_admin=True)

    assert cancelled(events) == [("a-acme", Reason.CANCELLED_BY_ADMIN)]


def test_cancel_all_with_nothing_open_emits_nothing():
    engine = new_engine()

    assert engine.cancel_all("alice", "", now=2) == []


def test_cancel_all_of_an_unknown_symbol_is_refused():
    engine = new_engine()
    place(engine, "alice", BUY, 99, order_id="a-acme")

    events = engine.cancel_all("alice", "NOPE", now=2)

    assert [e.reason for e in events] == [Refusal.UNKNOWN_SYMBOL]
    assert list(engine.open_orders) == ["a-acme"]


def test_cancel_all_of_an_unknown_user_is_refused():
    engine = new_engine()

    events = engine.cancel_all("ghost", "", now=2)

    assert [(e.reason, e.user_id) for e in events] == [(Refusal.UNKNOWN_ACCOUNT, "ghost")]


def test_cancel_all_without_a_user_is_refused_and_cancels_no_user_less_order():
    engine = new_engine()
    place(engine, FLOW, BUY, 99, order_id="flow-bid")

    events = engine.cancel_all("", "", now=2)

    assert [e.reason for e in events] == [Refusal.UNKNOWN_ACCOUNT]
    assert list(engine.open_orders) == ["flow-bid"]


# ---- news ------------------------------------------------------------------------------------


def test_news_is_published_exchange_wide():
    engine = new_engine()
    before = engine.exchange_sequence

    events = engine.publish_news("n1", "ACME recalls", ("ACME",), SHOCK, now=5)

    assert events == [NewsPublished("", 0, 5, before + 1, "n1", "ACME recalls", ("ACME",), SHOCK)]
    assert isinstance(events[0], EXCHANGE_WIDE)


def test_news_may_name_no_symbol():
    engine = new_engine()

    events = engine.publish_news("n1", "Rates unchanged", (), SHOCK, now=5)

    assert isinstance(events[0], NewsPublished) and events[0].symbols == ()


def test_news_naming_an_unlisted_symbol_is_refused_and_uses_no_sequence():
    engine = new_engine()
    before = engine.exchange_sequence

    events = engine.publish_news("n1", "Merger", ("ACME", "NOPE"), SHOCK, now=5)

    assert [type(e) for e in events] == [CommandRefused]
    assert events[0].reason == Refusal.UNKNOWN_SYMBOL
    assert "NOPE" in events[0].message
    assert engine.exchange_sequence == before


def test_news_without_a_headline_is_refused():
    engine = new_engine()

    events = engine.publish_news("n1", "", ("ACME",), SHOCK, now=5)

    assert [e.reason for e in events] == [Refusal.INVALID_ARGUMENT]


def test_account_created_carries_the_role():
    engine = new_engine()

    events = engine.create_account("bot-2", CASH, now=0, role=BOT)

    assert isinstance(events[0], AccountCreated) and events[0].role == BOT
