"""The bots' pacing and sight (data_svc/traders.py): the same decisions after a restart, none in
a burst after a stall, never more than the gateway's rate, and a view built from the log."""

from __future__ import annotations

from data_svc.agents import build_bots
from data_svc.prices import FairValues
from data_svc.scenario import load_scenario, scenario_path
from data_svc.traders import (
    MINUTE_NS,
    NS_PER_SECOND,
    STALE_ARRIVAL_NS,
    ArrivalSchedule,
    MessageBudget,
    agent_view,
    bot_limits,
)
from engine_svc.accounts import BOT
from engine_svc.events import Grant
from engine_svc.orders import OrderType, Side, TimeInForce
from tests.unit.test_sim_state import Log


def default_bots():
    scenario = load_scenario(scenario_path("default"))
    return scenario, build_bots(scenario)


def drain(schedule: ArrivalSchedule, until: int, step: int) -> list[tuple[str, int]]:
    found = []
    for now in range(step, until + 1, step):
        due, skipped = schedule.due(now)
        assert skipped == 0
        found.extend((bot.agent.agent_id, arrival.time) for bot, arrival in due)
    return found


def test_arrivals_come_in_time_order_and_the_same_after_a_restart() -> None:
    _, bots = default_bots()
    whole = drain(ArrivalSchedule(1, bots, 0), 3 * MINUTE_NS, NS_PER_SECOND // 2)
    assert [time for _, time in whole] == sorted(time for _, time in whole)
    assert len(whole) > 100
    restart = 90 * NS_PER_SECOND
    resumed = ArrivalSchedule(1, bots, restart)
    after = [(agent, time) for agent, time in whole if time >= restart]
    found = []
    for now in range(restart + NS_PER_SECOND // 2, 3 * MINUTE_NS + 1, NS_PER_SECOND // 2):
        found.extend((bot.agent.agent_id, arrival.time) for bot, arrival in resumed.due(now)[0])
    assert found == after
    assert drain(ArrivalSchedule(2, bots, 0), MINUTE_NS, NS_PER_SECOND) != whole[: len(found)]


def test_decisions_long_overdue_are_skipped_not_sent_in_a_burst() -> None:
    _, bots = default_bots()
    schedule = ArrivalSchedule(1, bots, 0)
    due, skipped = schedule.due(2 * MINUTE_NS)
    assert skipped > 50
    assert due and all(2 * MINUTE_NS - arrival.time <= STALE_ARRIVAL_NS for _, arrival in due)


def test_the_budget_keeps_to_the_gateway_rate() -> None:
    budget = MessageBudget(rate=20, burst=40)
    assert sum(budget.take(0) for _ in range(100)) == 40
    assert not budget.take(NS_PER_SECOND // 100)
    sent = sum(budget.take(i * NS_PER_SECOND // 1000) for i in range(1, 10_001))
    assert 195 <= sent <= 201  # 20/s over ten seconds
    assert MessageBudget(rate=2.5, burst=0).burst == 5


def test_a_view_needs_the_bots_account_and_symbol_in_the_log() -> None:
    scenario, bots = default_bots()
    [maker] = [bot for bot in bots if bot.agent.symbol == "ACME" and "maker" in bot.agent.agent_id]
    fair_values = FairValues(scenario, 1)
    log = Log(maker_fee_centi_bps=100, taker_fee_centi_bps=200, position_limit=5000)
    limits = bot_limits(log.state.settings)
    assert (limits.position_limit, limits.worst_fee_bps) == (5000, 2.0)
    view = agent_view(maker, log.state, fair_values, limits, 0, 0, "d1")
    assert view is None
    log(log.engine.add_symbol("ACME", 0, "0.01", 1, 5_000))
    assert agent_view(maker, log.state, fair_values, limits, 0, 0, "d1") is None
    user = maker.agent.agent_id
    log(log.engine.create_account(user, 1_000_000_000, 0, (Grant("ACME", 300, 0),), role=BOT))
    events = log.engine.place_order(
        "o1", user, "ACME", Side.BUY, OrderType.LIMIT, TimeInForce.GFD, 4_990, 10, 5, "c1"
    )
    log(events, 5)
    view = agent_view(
        maker, log.state, fair_values, limits, 7 * NS_PER_SECOND, 8 * NS_PER_SECOND, "d2"
    )
    assert view is not None
    [symbol] = view.markets
    held = log.engine.accounts[user].reserved_cash
    assert view.available_cash == 1_000_000_000 - held and held > 4_990 * 10 * 100
    assert (symbol.best_bid, symbol.bid_size, symbol.position, view.open_order_count) == (
        4_990,
        10,
        300,
        1,
    )
    [order] = symbol.open_orders
    assert (order.order_id, order.client_order_id, order.remaining) == ("o1", "c1", 10)
    assert order.created_at == 7 * NS_PER_SECOND - (8 * NS_PER_SECOND - 5)
    assert view.limits == limits and symbol.fair_value == fair_values.ticks("ACME")
