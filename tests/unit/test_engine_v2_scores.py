"""Rules version 2: marks and scores, one behaviour per test, figures worked out by hand.

The mark of a symbol is the mid of a two-sided book at most `mark_max_spread_ticks` wide, else
the last trade clamped into the book, else the reference price, else none (a position is then
worth its cost). Scores are sampled at the first command of each new minute of log time, for
ranked participants only; minutes without a command count as changes of zero.
"""

from __future__ import annotations

import itertools
import math

import pytest

from engine_svc.accounts import BOT, Account, Position
from engine_svc.engine import MatchingEngine
from engine_svc.events import Grant, ParticipantScore, ScoresSampled
from engine_svc.orders import OrderType, Side, TimeInForce
from engine_svc.rules import ExchangeSettings
from engine_svc.scoring import MINUTE_NS, Score, equity, mark_units
from engine_svc.servicer import CommandHandler
from exchange.internal.v1 import engine_pb2

BUY, SELL = Side.BUY, Side.SELL
LIMIT, GFD, IOC = OrderType.LIMIT, TimeInForce.GFD, TimeInForce.IOC
MINUTE = MINUTE_NS
FLOW = ""
CASH = 1_000_000

_ids = itertools.count(1)


def new_engine(**settings) -> MatchingEngine:
    """ACME (tick 0.01: 100 cash units, reference 1.00); alice and bob participants with cash
    only, a bot and an admin."""
    engine = MatchingEngine(ExchangeSettings(rules_version=2, **settings), market_open=True)
    engine.add_symbol("ACME", now=0, reference_price=100)
    engine.create_account("alice", CASH, now=0)
    engine.create_account("bot-1", CASH, now=0, grants=(Grant("ACME", 50, 0),), role=BOT)
    engine.create_account("bob", CASH, now=0)
    engine.create_account("ops", CASH, now=0, admin=True)
    return engine


def place(engine, user, side, price, quantity, tif=GFD, now=1):
    order_id = f"o{next(_ids)}"
    return engine.place_order(order_id, user, "ACME", side, LIMIT, tif, price, quantity, now)


def buy(engine, user, price, quantity, now=1):
    place(engine, FLOW, SELL, price, quantity, now=now)
    place(engine, user, BUY, price, quantity, tif=IOC, now=now)


def mark_to(engine, price, now=1):
    """A trade between user-less flows: the mark (last trade, empty book) becomes `price`."""
    place(engine, FLOW, SELL, price, 1, now=now)
    place(engine, FLOW, BUY, price, 1, tif=IOC, now=now)


def sample(engine, now) -> dict[str, ParticipantScore]:
    events = engine.sample_scores(now)
    assert [type(e) for e in events] == [ScoresSampled], events
    assert events[0].timestamp == now
    return {score.user_id: score for score in events[0].scores}


# ---- marks -----------------------------------------------------------------------------------


def test_the_mark_is_the_mid_of_a_narrow_two_sided_book():
    assert mark_units(99, 101, 0, 0, 100, 2) == 10_000
    assert mark_units(99, 101, 120, 100, 100, 2) == 10_000  # the last trade does not matter


def test_the_mid_is_rounded_down_to_a_cash_unit():
    assert mark_units(99, 100, 0, 0, 5, 1) == 497  # 199 x 5 / 2 = 497.5


def test_a_book_wider_than_the_limit_marks_at_the_last_trade():
    assert mark_units(95, 105, 101, 100, 100, 5) == 10_100


def test_the_last_trade_is_clamped_into_the_book():
    assert mark_units(95, 105, 120, 100, 100, 5) == 10_500
    assert mark_units(95, 105, 80, 100, 100, 5) == 9_500
    assert mark_units(95, 0, 80, 100, 100, 5) == 9_500  # bid only
    assert mark_units(0, 105, 120, 100, 100, 5) == 10_500  # ask only
    assert mark_units(0, 0, 120, 100, 100, 5) == 12_000


def test_a_limit_of_zero_never_takes_the_mid():
    assert mark_units(99, 100, 50, 100, 100, 0) == 9_900


def test_before_any_trade_the_mark_is_the_reference_price():
    assert mark_units(0, 0, 0, 100, 100, 2) == 10_000
    assert mark_units(90, 120, 0, 100, 100, 2) == 10_000


def test_without_trade_or_reference_there_is_no_mark():
    assert mark_units(0, 0, 0, 0, 100, 2) is None
    assert mark_units(90, 120, 0, 0, 100, 2) is None


def test_a_position_without_a_mark_is_worth_its_cost():
    account = Account("alice", 1_000)
    account.positions["ACME"] = Position(10, 7_000)
    account.positions["BETA"] = Position(-4, -2_000)
    account.positions["FLAT"] = Position(0, 0)

    assert equity(account, {"ACME": None, "BETA": 600}) == 1_000 + 7_000 - 4 * 600
    assert equity(account, {}) == 1_000 + 7_000 - 2_000


def test_the_engine_marks_at_the_mid_of_its_book_when_narrow():
    engine = new_engine(mark_max_spread_ticks=2)
    mark_to(engine, 95)
    place(engine, FLOW, BUY, 99, 1)
    place(engine, FLOW, SELL, 101, 1)

    assert engine.marks() == {"ACME": 10_000}
    place(engine, FLOW, SELL, 100, 1)  # the best ask moves in: the mid of 99 and 100
    assert engine.marks() == {"ACME": 9_950}


def test_the_engine_marks_at_the_last_trade_clamped_when_the_book_is_wide():
    engine = new_engine(mark_max_spread_ticks=2)
    mark_to(engine, 95)
    place(engine, FLOW, BUY, 97, 1)
    place(engine, FLOW, SELL, 110, 1)

    assert engine.marks() == {"ACME": 9_700}


def test_every_quote_carries_the_mark_in_cash_units():
    engine = new_engine(mark_max_spread_ticks=2)
    events = place(engine, FLOW, BUY, 99, 1)
    assert events[-1].mark == 10_000  # one-sided, no trade yet: the reference price

    events = place(engine, FLOW, SELL, 101, 1)
    assert events[-1].mark == 10_000  # the mid of 99 and 101

    events = place(engine, FLOW, SELL, 99, 1, tif=IOC)
    assert (events[-1].last, events[-1].mark) == (99, 9_900)  # one-sided again: the last trade


def test_the_engine_values_a_grant_in_a_symbol_without_a_mark_at_its_cost():
    engine = new_engine()
    engine.add_symbol("NOREF", now=0)
    engine.create_account("carol", CASH, now=0, grants=(Grant("NOREF", 10, 70),))
    assert engine.sample_scores(0) == []

    carol = sample(engine, MINUTE)["carol"]

    assert engine.marks()["NOREF"] is None
    assert (carol.equity, carol.pnl) == (CASH + 10 * 70 * 100, 0)


# ---- when scores are sampled --------------------------------------------------------------------


def test_the_first_command_starts_the_clock_without_a_sample():
    engine = new_engine()

    assert engine.sample_scores(5 * MINUTE + 7) == []
    assert engine.last_sample_minute == 5


def test_scores_are_sampled_once_at_the_first_command_of_each_new_minute():
    engine = new_engine()
    assert engine.sample_scores(0) == []

    assert engine.sample_scores(MINUTE - 1) == []
    assert engine.sample_scores(MINUTE) != []
    assert engine.sample_scores(MINUTE + 1) == []
    assert engine.sample_scores(2 * MINUTE - 1) == []
    assert engine.sample_scores(5 * MINUTE + 3) != []
    assert engine.last_sample_minute == 5


def test_a_sample_is_an_exchange_wide_event_with_the_next_exchange_sequence():
    engine = new_engine()
    engine.sample_scores(0)
    sequence = engine.exchange_sequence

    events = engine.sample_scores(MINUTE)

    assert events[0].exchange_sequence == sequence + 1 == engine.exchange_sequence
    assert (events[0].symbol, events[0].sequence) == ("", 0)


def test_bots_and_admins_are_not_in_the_scores():
    engine = new_engine()
    engine.sample_scores(0)

    assert list(sample(engine, MINUTE)) == ["alice", "bob"]


def test_without_ranked_participants_nothing_is_sampled_but_the_clock_moves():
    engine = MatchingEngine(ExchangeSettings(rules_version=2))
    engine.create_account("bot-1", CASH, now=0, role=BOT)
    engine.sample_scores(0)
    sequence = engine.exchange_sequence

    assert engine.sample_scores(3 * MINUTE) == []
    assert engine.last_sample_minute == 3 and engine.exchange_sequence == sequence


def test_the_command_handler_samples_after_the_first_command_of_a_new_minute():
    handler = CommandHandler(MatchingEngine(ExchangeSettings(rules_version=2)))

    def run(now, **command):
        return handler.apply(engine_pb2.EngineCommand(timestamp_ns=now, **command))

    add = engine_pb2.AddSymbolCommand(symbol="ACME", reference_price_ticks=100)
    assert not any(isinstance(e, ScoresSampled) for e in run(0, add_symbol=add))
    create = engine_pb2.CreateAccountCommand(user_id="alice", cash_units=CASH)
    assert not any(isinstance(e, ScoresSampled) for e in run(30 * 10**9, create_account=create))
    place_order = engine_pb2.PlaceOrderCommand(
        order_id="a1",
        user_id="alice",
        symbol="ACME",
        side=BUY,
        type=LIMIT,
        time_in_force=GFD,
        price_ticks=90,
        quantity=10,
    )

    events = run(MINUTE + 1, place_order=place_order)
    later = run(MINUTE + 2, open_market=engine_pb2.OpenMarketCommand())

    assert isinstance(events[-1], ScoresSampled)  # after the command's own events
    assert [s.user_id for s in events[-1].scores] == ["alice"]
    assert events[-1].timestamp == MINUTE + 1
    assert later == []


# ---- what a score says --------------------------------------------------------------------------


def test_drawdown_and_sharpe_follow_the_per_minute_pnl_with_skipped_minutes_as_zeros():
    engine = new_engine()
    engine.sample_scores(0)
    buy(engine, "alice", 100, 10)  # P&L moves 1,000 per tick

    mark_to(engine, 103)
    first = sample(engine, MINUTE)["alice"]  # change +3,000
    assert (first.pnl, first.max_drawdown, first.sharpe) == (3_000, 0, 0.0)

    mark_to(engine, 90)  # within the minute: never sampled
    assert engine.sample_scores(MINUTE + 30 * 10**9) == []
    mark_to(engine, 101)
    second = sample(engine, 2 * MINUTE)["alice"]  # change -2,000
    # changes +3,000, -2,000: mean 500, variance 6,500,000 - 250,000 = 2,500^2
    assert (second.pnl, second.max_drawdown, second.sharpe) == (1_000, 2_000, 0.2)

    mark_to(engine, 104)
    third = sample(engine, 5 * MINUTE)["alice"]  # minutes 3 and 4 no change, minute 5 +3,000
    score = engine.scores["alice"]
    assert (score.changes, score.change_sum, score.change_squares) == (5, 4_000, 22_000_000)
    # mean 800, variance 22,000,000 / 5 - 800^2 = 3,760,000
    assert third.sharpe == round(800 / math.sqrt(3_760_000), 6) == 0.412568
    assert (third.pnl, third.max_drawdown) == (4_000, 2_000)

    mark_to(engine, 98)
    fourth = sample(engine, 6 * MINUTE)["alice"]  # change -6,000
    assert (fourth.pnl, fourth.max_drawdown) == (-2_000, 6_000)
    # mean -2,000 / 6, variance 58,000,000 / 6 - mean^2
    mean = -2_000 / 6
    assert fourth.sharpe == round(mean / math.sqrt(58_000_000 / 6 - mean * mean), 6)
    assert fourth.sharpe == -0.107833


def test_a_participant_who_never_trades_has_zero_pnl_and_zero_sharpe():
    engine = new_engine()
    engine.sample_scores(0)
    mark_to(engine, 150)

    bob = sample(engine, 7 * MINUTE)["bob"]

    assert bob == ParticipantScore("bob", CASH, 0, 0, 0, 0.0, (), 0)


def test_a_score_carries_equity_realized_pnl_and_fees_paid():
    engine = new_engine(taker_fee_centi_bps=100)
    engine.sample_scores(0)
    buy(engine, "alice", 100, 10)  # notional 100,000: fee 10
    place(engine, FLOW, BUY, 110, 4)
    place(engine, "alice", SELL, 110, 4, tif=IOC)  # notional 44,000: fee 4; realizes 4,000

    alice = sample(engine, MINUTE)["alice"]

    assert alice.fees_paid == 14
    assert alice.realized_pnl == 4_000
    assert alice.equity == CASH - 100_000 - 10 + 44_000 - 4 + 6 * 110 * 100
    # realized 4,000 + unrealized 6 x 10 ticks x 100 = 6,000, less 14 of fees
    assert alice.pnl == alice.equity - CASH == 9_986


def test_sharpe_is_zero_until_two_minutes_and_when_every_change_is_equal():
    score = Score()
    score.record(100, 1)
    assert score.sharpe == 0.0
    score.record(200, 1)
    assert score.sharpe == 0.0  # +100, +100: no deviation


@pytest.mark.parametrize(
    ("path", "drawdown"),
    [((100, 50, 80, 20, 120), 80), ((-10, -30, -5), 30), ((10, 20, 30), 0)],
)
def test_max_drawdown_is_the_largest_fall_from_a_previous_high(path, drawdown):
    score = Score()
    for pnl in path:
        score.record(pnl, 1)

    assert score.max_drawdown == drawdown
