"""Rules version 2: the competition's scenario and rounds, one behaviour per test.

A round start banks the running round's P&L into each ranked participant's score; with a reset
it cancels their orders and puts their cash and granted positions back. A round end records the
round's P&L and samples the scores. Marks here are the last trade (no mid), so a trade between
two user-less flows moves every position's value.
"""

from __future__ import annotations

import itertools

from engine_svc.accounts import BOT
from engine_svc.engine import MatchingEngine
from engine_svc.events import (
    AccountReset,
    CommandRefused,
    Grant,
    NewsPublished,
    NewsShock,
    OrderCancelled,
    RoundEnded,
    RoundStarted,
    ScenarioChanged,
    ScoresSampled,
    TradingHalted,
    TradingResumed,
)
from engine_svc.orders import OrderType, Reason, Refusal, Side, TimeInForce
from engine_svc.rules import ExchangeSettings

BUY, SELL = Side.BUY, Side.SELL
LIMIT, GFD, IOC = OrderType.LIMIT, TimeInForce.GFD, TimeInForce.IOC
MINUTE = 60 * 1_000_000_000
ENDS = 30 * MINUTE
FLOW = ""
ALICE_CASH, BOB_CASH = 1_000_000, 2_000_000
# alice: 1,000,000 cash and 10 ACME at 1.00 (cost 100,000): starting value 1,100,000.

_ids = itertools.count(1)


def new_engine(**settings) -> MatchingEngine:
    engine = MatchingEngine(ExchangeSettings(rules_version=2, **settings), market_open=True)
    engine.add_symbol("ACME", now=0, reference_price=100)
    engine.add_symbol("BETA", now=0, reference_price=50)
    engine.create_account("alice", ALICE_CASH, now=0, grants=(Grant("ACME", 10, 100),))
    engine.create_account("bob", BOB_CASH, now=0)
    engine.create_account("bot-1", 5_000_000, now=0, grants=(Grant("ACME", 50, 0),), role=BOT)
    engine.create_account("ops", 0, now=0, admin=True)
    return engine


def place(engine, user, side, price, quantity, symbol="ACME", tif=GFD, order_id="", now=1):
    order_id = order_id or f"o{next(_ids)}"
    return engine.place_order(order_id, user, symbol, side, LIMIT, tif, price, quantity, now)


def buy(engine, user, price, quantity, symbol="ACME", now=1):
    """`user` buys from a user-less flow at `price`."""
    place(engine, FLOW, SELL, price, quantity, symbol, now=now)
    place(engine, user, BUY, price, quantity, symbol, tif=IOC, now=now)


def mark_to(engine, price, symbol="ACME", now=1):
    """A trade between two user-less flows: the last price (the mark) becomes `price`."""
    place(engine, FLOW, SELL, price, 1, symbol, now=now)
    place(engine, FLOW, BUY, price, 1, symbol, tif=IOC, now=now)


def scores_of(events) -> dict:
    sampled = [e for e in events if isinstance(e, ScoresSampled)]
    assert len(sampled) == 1, events
    return {score.user_id: score for score in sampled[0].scores}


def holdings(engine, user) -> tuple:
    account = engine.accounts[user]
    return (
        account.cash,
        account.reserved_cash,
        {
            s: (p.quantity, p.reserved, p.buying, p.cost, p.realized_pnl)
            for s, p in account.positions.items()
        },
    )


# ---- scenario ----------------------------------------------------------------------------------


LOADED, RUNNING, PAUSED, STOPPED = 1, 2, 3, 4


def test_set_scenario_records_it_and_is_announced_exchange_wide():
    engine = new_engine()
    before = engine.exchange_sequence

    events = engine.set_scenario(LOADED, 5, "crash", 42, "abc123", 3)

    assert events == [
        ScenarioChanged("", 0, 5, before + 1, LOADED, "crash", 42, "abc123", 3, 0, 0, (), 0, 0)
    ]
    competition = engine.competition
    assert (competition.scenario_state, competition.scenario_name, competition.seed) == (
        LOADED,
        "crash",
        42,
    )
    assert (competition.digest, competition.rounds) == ("abc123", 3)


def test_the_scenario_clock_counts_only_the_log_time_it_runs():
    engine = new_engine()
    engine.set_scenario(LOADED, 10, "crash", 42, "abc123", 3)

    elapsed = [
        engine.set_scenario(state, now)[0].elapsed
        for state, now in ((RUNNING, 100), (PAUSED, 250), (RUNNING, 400), (STOPPED, 450))
    ]

    assert elapsed == [0, 150, 150, 200]
    assert engine.competition.scenario_name == "crash"  # only LOADED names the scenario


def test_loading_a_scenario_restarts_its_clock():
    engine = new_engine()
    engine.set_scenario(LOADED, 0, "a", 1, "d1", 1)
    engine.set_scenario(RUNNING, 10)
    engine.set_scenario(PAUSED, 70)

    events = engine.set_scenario(LOADED, 100, "b", 2, "d2", 2)

    assert (events[0].name, events[0].elapsed) == ("b", 0)


def test_a_round_start_is_announced_with_the_scenarios_round_count():
    engine = new_engine()
    engine.set_scenario(LOADED, 5, "crash", 42, "abc123", 3)
    before = engine.exchange_sequence

    events = engine.start_round(1, ENDS, False, now=6)

    assert events == [RoundStarted("", 0, 6, before + 1, 1, 3, ENDS)]
    competition = engine.competition
    assert (competition.round, competition.round_ends_at, competition.round_open) == (
        1,
        ENDS,
        True,
    )


# ---- a round without reset ----------------------------------------------------------------------


def test_a_round_without_reset_keeps_cash_positions_and_orders():
    engine = new_engine()
    buy(engine, "alice", 100, 5)
    place(engine, "alice", BUY, 90, 5, order_id="a-bid")
    before = holdings(engine, "alice")

    events = engine.start_round(1, ENDS, False, now=2)

    assert [type(e) for e in events] == [RoundStarted]
    assert holdings(engine, "alice") == before
    assert "a-bid" in engine.open_orders


def test_round_pnl_is_what_the_account_made_during_the_round():
    engine = new_engine()
    mark_to(engine, 105)  # alice's 10 shares: +5,000 before the round
    engine.start_round(1, ENDS, False, now=2)
    buy(engine, "alice", 105, 10, now=3)  # 20 shares
    mark_to(engine, 110, now=3)  # +5 ticks x 20 shares x 100 = +10,000 in the round

    events = engine.end_round(1, now=4)

    assert [type(e) for e in events] == [ScoresSampled, RoundEnded]
    assert events[1].round == 1
    alice = scores_of(events)["alice"]
    assert alice.round_pnls == (10_000,)
    assert alice.equity == ALICE_CASH - 105 * 10 * 100 + 20 * 110 * 100
    assert engine.scores["alice"].round_pnls == [10_000]
    assert not engine.competition.round_open


def test_the_running_round_shows_in_the_scores_as_the_last_round_pnl():
    engine = new_engine()
    assert engine.sample_scores(0) == []  # the first command's minute: nothing to compare yet
    engine.start_round(1, ENDS, False, now=2)
    mark_to(engine, 103, now=3)
    engine.end_round(1, now=4)
    engine.start_round(2, ENDS, False, now=5)
    mark_to(engine, 101, now=6)

    alice = scores_of(engine.sample_scores(MINUTE))["alice"]
    assert alice.round_pnls == (3_000, -2_000)
    assert alice.pnl == 1_000


# ---- a round with reset -----------------------------------------------------------------------


def test_a_reset_puts_cash_and_granted_positions_back_at_their_cost():
    engine = new_engine()
    engine.start_round(1, ENDS, False, now=1)
    buy(engine, "alice", 100, 5, now=2)
    place(engine, FLOW, BUY, 120, 15, now=2)
    place(engine, "alice", SELL, 120, 15, tif=IOC, now=2)  # position 0, realized P&L
    buy(engine, "alice", 50, 4, symbol="BETA", now=2)  # a symbol she was never granted
    buy(engine, "bob", 120, 3, now=2)
    assert engine.accounts["alice"].positions["ACME"].realized_pnl != 0

    events = engine.start_round(2, ENDS, True, now=3)

    resets = [e for e in events if isinstance(e, AccountReset)]
    assert resets == [
        AccountReset("", 0, 3, "alice", ALICE_CASH),
        AccountReset("", 0, 3, "bob", BOB_CASH),
    ]
    assert holdings(engine, "alice") == (ALICE_CASH, 0, {"ACME": (10, 0, 0, 100_000, 0)})
    assert holdings(engine, "bob") == (BOB_CASH, 0, {})
    assert engine.accounts["alice"].realized_pnl == 0


def test_a_reset_cancels_participants_orders_by_admin_but_not_bots_orders():
    engine = new_engine()
    place(engine, "alice", BUY, 90, 5, order_id="a-bid")
    place(engine, "alice", SELL, 110, 5, order_id="a-ask")
    place(engine, "bot-1", SELL, 111, 5, order_id="bot-ask")

    events = engine.start_round(1, ENDS, True, now=2)

    assert sorted(
        (e.order.order_id, e.reason) for e in events if isinstance(e, OrderCancelled)
    ) == [("a-ask", Reason.CANCELLED_BY_ADMIN), ("a-bid", Reason.CANCELLED_BY_ADMIN)]
    assert list(engine.open_orders) == ["bot-ask"]
    assert engine.open_order_counts["alice"] == 0
    assert isinstance(events[-1], RoundStarted)


def test_a_reset_leaves_bots_and_admins_accounts_alone():
    engine = new_engine()
    buy(engine, "bot-1", 100, 5)
    before = holdings(engine, "bot-1"), holdings(engine, "ops")

    events = engine.start_round(1, ENDS, True, now=2)

    assert {e.user_id for e in events if isinstance(e, AccountReset)} == {"alice", "bob"}
    assert (holdings(engine, "bot-1"), holdings(engine, "ops")) == before


def test_event_pnl_adds_the_rounds_across_a_reset():
    engine = new_engine()
    engine.start_round(1, ENDS, False, now=1)
    buy(engine, "alice", 100, 10, now=2)
    mark_to(engine, 110, now=2)  # 20 shares up 10 ticks: +20,000

    events = engine.start_round(2, ENDS, True, now=3)
    # After the reset alice holds her 10 granted shares again, worth 110 now: her account's P&L
    # is +10,000, which is the new round's base, not the round's gain.
    assert engine.scores["alice"].banked == 20_000
    assert engine.scores["alice"].round_base == 10_000
    assert [type(e) for e in events][:2] == [ScoresSampled, RoundEnded]

    mark_to(engine, 120, now=4)  # +10 ticks x 10 shares: +10,000 in round 2
    events = engine.end_round(2, now=5)

    alice = scores_of(events)["alice"]
    assert alice.round_pnls == (20_000, 10_000)
    assert alice.pnl == 30_000
    assert alice.equity == ALICE_CASH + 10 * 120 * 100


def test_a_round_started_while_one_is_open_ends_it_first():
    engine = new_engine()
    engine.start_round(1, ENDS, False, now=1)
    mark_to(engine, 102, now=2)
    sequence = engine.exchange_sequence

    events = engine.start_round(2, 2 * ENDS, False, now=3)

    assert [type(e) for e in events] == [ScoresSampled, RoundEnded, RoundStarted]
    assert [e.exchange_sequence for e in events] == [sequence + 1, sequence + 2, sequence + 3]
    assert (events[1].round, events[2].round, events[2].ends_at) == (1, 2, 2 * ENDS)
    assert scores_of(events)["alice"].round_pnls == (2_000,)
    assert engine.scores["alice"].round_pnls == [2_000]
    assert engine.competition.round == 2 and engine.competition.round_open


def test_a_round_started_while_one_is_open_ends_it_before_the_reset():
    engine = new_engine()
    engine.start_round(1, ENDS, False, now=1)
    place(engine, "alice", BUY, 90, 5, now=2)

    events = engine.start_round(2, ENDS, True, now=3)

    kinds = [type(e).__name__ for e in events]
    assert kinds.index("RoundEnded") < kinds.index("OrderCancelled")
    assert kinds.index("AccountReset") < kinds.index("RoundStarted") == len(kinds) - 1


# ---- end of a round -----------------------------------------------------------------------------


def test_end_round_of_another_round_than_the_one_in_progress_is_refused():
    engine = new_engine()
    engine.start_round(1, ENDS, False, now=1)
    sequence = engine.exchange_sequence

    events = engine.end_round(2, now=2)

    assert [type(e) for e in events] == [CommandRefused]
    assert events[0].reason == Refusal.FAILED_PRECONDITION
    assert engine.competition.round_open and engine.exchange_sequence == sequence
    assert engine.scores["alice"].round_pnls == []


def test_end_round_when_no_round_is_in_progress_is_refused():
    engine = new_engine()
    engine.start_round(1, ENDS, False, now=1)
    engine.end_round(1, now=2)

    assert [e.reason for e in engine.end_round(1, now=3)] == [Refusal.FAILED_PRECONDITION]
    assert engine.scores["alice"].round_pnls == [0]


def test_end_round_before_any_round_is_refused():
    engine = new_engine()

    assert [e.reason for e in engine.end_round(0, now=1)] == [Refusal.FAILED_PRECONDITION]


def test_the_end_of_round_scores_leave_bots_and_admins_out():
    engine = new_engine()
    engine.start_round(1, ENDS, False, now=1)

    events = engine.end_round(1, now=2)

    assert list(scores_of(events)) == ["alice", "bob"]


def test_pnl_made_before_the_first_round_is_not_part_of_the_event_pnl():
    engine = new_engine()
    mark_to(engine, 115)  # alice's 10 granted shares: +15,000 before the competition starts

    engine.start_round(1, ENDS, True, now=2)
    events = engine.end_round(1, now=3)

    alice = scores_of(events)["alice"]
    assert alice.round_pnls == (0,)
    assert alice.pnl == sum(alice.round_pnls) == 0


def test_pnl_made_between_rounds_is_no_rounds_and_not_the_events():
    engine = new_engine()
    assert engine.sample_scores(0) == []
    engine.start_round(1, ENDS, False, now=1)
    mark_to(engine, 103, now=2)  # +3,000 in round 1
    engine.end_round(1, now=3)
    mark_to(engine, 110, now=4)  # +7,000 between the rounds

    between = scores_of(engine.sample_scores(MINUTE))["alice"]
    engine.start_round(2, ENDS, False, now=MINUTE + 1)
    mark_to(engine, 111, now=MINUTE + 2)  # +1,000 in round 2
    during = scores_of(engine.sample_scores(2 * MINUTE))["alice"]

    assert (between.pnl, between.round_pnls) == (3_000, (3_000,))
    assert (during.pnl, during.round_pnls) == (4_000, (3_000, 1_000))
    assert during.equity == ALICE_CASH + 10 * 111 * 100


def test_pnl_before_the_first_round_is_no_drawdown_of_the_event():
    engine = new_engine()
    assert engine.sample_scores(0) == []
    mark_to(engine, 115)  # +15,000 on alice's grant before the competition
    assert scores_of(engine.sample_scores(MINUTE))["alice"].pnl == 15_000

    engine.start_round(1, ENDS, False, now=MINUTE + 1)
    alice = scores_of(engine.sample_scores(2 * MINUTE))["alice"]

    assert (alice.pnl, alice.round_pnls) == (0, (0,))
    assert alice.max_drawdown == 0


# ---- idempotent scenario operations (what the simulator repeats after a restart) -------------


def running_round(engine, round_number=1, ends=ENDS, now=2):
    engine.set_scenario(LOADED, 1, "demo", 7, "d", 2)
    engine.set_scenario(RUNNING, now)
    return engine.start_round(round_number, ends, False, now=now)


def test_starting_a_round_already_started_is_refused_and_changes_nothing():
    engine = new_engine()
    running_round(engine)
    before = engine.exchange_sequence

    events = engine.start_round(1, ENDS, False, now=3)

    assert [e.reason for e in events] == [Refusal.FAILED_PRECONDITION]
    assert "round 1 has started already" in events[0].message
    assert (engine.competition.round, engine.competition.round_open) == (1, True)
    assert engine.exchange_sequence == before
    assert [e.reason for e in engine.start_round(0, ENDS, False, now=4)] == [
        Refusal.FAILED_PRECONDITION
    ]


def test_a_repeated_start_with_reset_is_refused_and_resets_nobody_again():
    engine = new_engine()
    running_round(engine)
    engine.start_round(2, ENDS, True, now=3)
    buy(engine, "alice", 100, 5, now=4)
    before = holdings(engine, "alice"), engine.exchange_sequence

    events = engine.start_round(2, ENDS, True, now=5)  # the same command, sent again

    assert [e.reason for e in events] == [Refusal.FAILED_PRECONDITION]
    assert "send restart with resetAccounts" in events[0].message
    assert (holdings(engine, "alice"), engine.exchange_sequence) == before


def test_restart_applies_only_to_the_round_in_progress_with_reset():
    engine = new_engine()
    running_round(engine)
    for number, reset in ((1, False), (2, True)):
        events = engine.start_round(number, ENDS, reset, now=3, restart=True)
        assert [e.reason for e in events] == [Refusal.FAILED_PRECONDITION]
        assert "restart applies to the round in progress" in events[0].message
    assert engine.competition.round == 1


def test_starting_the_round_in_progress_again_with_restart_resets_it_without_banking():
    engine = new_engine()
    running_round(engine)
    buy(engine, "alice", 100, 5, now=3)
    mark_to(engine, 120, now=4)  # alice's 15 ACME gain 300,000 in round 1 so far

    events = engine.start_round(1, ENDS, True, now=5, restart=True)

    assert not [e for e in events if isinstance(e, RoundEnded)]
    assert [e.user_id for e in events if isinstance(e, AccountReset)] == ["alice", "bob"]
    assert holdings(engine, "alice")[0] == ALICE_CASH
    alice = scores_of(engine.end_round(1, now=MINUTE))["alice"]
    # Back at the start; the round's base is taken after the reset (the grant marked at 120),
    # and nothing of the first try was banked.
    assert (alice.pnl, alice.round_pnls) == (0, (0,))


def test_a_pause_moves_the_round_end_on_by_its_length():
    engine = new_engine()
    running_round(engine, ends=ENDS, now=2)

    engine.set_scenario(PAUSED, 10 * MINUTE)
    events = engine.set_scenario(RUNNING, 13 * MINUTE)

    assert engine.competition.round_ends_at == ENDS + 3 * MINUTE
    assert events[0].round_ends_at == ENDS + 3 * MINUTE
    assert events[0].elapsed == 10 * MINUTE - 2


def test_a_pause_between_rounds_moves_the_next_rounds_start():
    engine = new_engine()
    running_round(engine)
    ended = engine.end_round(1, now=MINUTE, next_starts_at=2 * MINUTE)
    assert ended[-1] == RoundEnded("", 0, MINUTE, engine.exchange_sequence, 1, 2 * MINUTE)

    engine.set_scenario(PAUSED, MINUTE + 10)
    events = engine.set_scenario(RUNNING, MINUTE + 40)

    assert events[0].next_round_starts_at == 2 * MINUTE + 30
    assert engine.competition.next_round_starts_at == 2 * MINUTE + 30
    engine.start_round(2, ENDS, False, now=2 * MINUTE + 30)
    assert engine.competition.next_round_starts_at == 0


def test_a_news_id_is_published_once():
    engine = new_engine()
    shock = NewsShock(0.01, 1.0, 0.0)
    assert isinstance(
        engine.publish_news("n1", "ACME up", ("ACME",), shock, now=1)[0], NewsPublished
    )

    again = engine.publish_news("n1", "ACME up", ("ACME",), shock, now=2)

    assert [e.reason for e in again] == [Refusal.DUPLICATE_NEWS_ID]
    assert [e.reason for e in engine.publish_news("", "x", (), shock, now=3)] == [
        Refusal.INVALID_ARGUMENT
    ]


def test_only_a_loaded_scenario_can_run_pause_or_stop():
    engine = new_engine()
    for state in (RUNNING, PAUSED, STOPPED):
        assert [e.reason for e in engine.set_scenario(state, 1)] == [Refusal.FAILED_PRECONDITION]
    assert [e.reason for e in engine.set_scenario(LOADED, 1)] == [Refusal.INVALID_ARGUMENT]


def test_loading_a_scenario_starts_a_new_event():
    engine = new_engine()
    running_round(engine)
    mark_to(engine, 110, now=3)
    engine.sample_scores(0)
    engine.sample_scores(MINUTE)

    events = engine.set_scenario(LOADED, 2 * MINUTE, "next", 0, "d2", 1, 250_000)

    assert [type(e) for e in events] == [ScoresSampled, RoundEnded, ScenarioChanged]
    changed = events[-1]
    assert (changed.name, changed.seed, changed.participant_cash) == ("next", 0, 250_000)
    competition = engine.competition
    assert (competition.round, competition.round_open, competition.seed) == (0, False, 0)
    assert all(
        not s.round_pnls and not s.banked and not s.max_drawdown for s in engine.scores.values()
    )
    assert engine.start_round(1, ENDS, False, now=2 * MINUTE + 1)[-1].round == 1


def test_the_scenarios_terms_are_what_a_participant_starts_with():
    engine = new_engine()
    grants = (Grant("ACME", 20, 0),)
    events = engine.set_scenario(LOADED, 1, "demo", 7, "d", 1, 400_000, grants)
    assert events[0].participant_grants == grants
    competition = engine.competition

    engine.create_account("team-1", competition.participant_cash, 2, competition.participant_grants)

    team = engine.accounts["team-1"]
    assert (team.cash, team.positions["ACME"].quantity) == (400_000, 20)
    assert team.starting_value == 400_000 + 20 * 100 * 100


def test_a_pause_halts_every_symbol_and_running_again_resumes_only_those():
    engine = new_engine()
    running_round(engine)
    engine.halt(3, "BETA")  # the organizer's own halt, before the pause

    paused = engine.set_scenario(PAUSED, 4)

    assert [e.symbol for e in paused if isinstance(e, TradingHalted)] == ["ACME"]
    assert engine.symbols["ACME"].halted and engine.competition.paused_symbols == ("ACME",)
    assert place(engine, "bob", BUY, 100, 1, now=5)[0].reason == Reason.SYMBOL_HALTED
    assert engine.set_scenario(PAUSED, 6)[-1].state == PAUSED  # again: nothing more halted

    resumed = engine.set_scenario(RUNNING, 7)

    assert [e.symbol for e in resumed if isinstance(e, TradingResumed)] == ["ACME"]
    assert not engine.symbols["ACME"].halted and engine.symbols["BETA"].halted
    assert engine.competition.paused_symbols == ()
