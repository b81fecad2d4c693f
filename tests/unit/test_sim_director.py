"""The simulator's director (data_svc/director.py): the scenario's timeline against the log.

Operations are carried out on a real in-process engine and folded back, as the service does
through the gateway and the log: rounds open and close on the schedule, news goes out once per
pass, a repeat or an early look changes nothing, and a director that was away catches up with
only what is still missing.
"""

from __future__ import annotations

from data_svc import director
from data_svc.director import (
    CloseMarket,
    EndRound,
    FinishScenario,
    OpenMarket,
    PublishNews,
    StartRound,
    due_operations,
)
from data_svc.market import LOADED, RUNNING, STOPPED
from data_svc.scenario import Scenario, parse_scenario
from engine_svc.events import NewsShock
from tests.unit.test_sim_state import SECOND, Log, opened_market

QUICK = """\
name: quick
instruments:
  - {symbol: ACME, tick_size: 0.01, start_price: 50, process: {kind: gbm, volatility: 0.02}}
schedule:
  rounds:
    - {name: One, length_seconds: 30, break_seconds: 10}
    - {name: Two, length_seconds: 20}
  reset_between_rounds: true
  REPEAT
news:
  - {time_seconds: 5, headline: ACME wins a contract, symbols: [ACME], price_change: 0.02}
  - {time_seconds: 45, headline: ACME loses it, symbols: [ACME], price_change: -0.01}
"""


def quick(repeat: bool = False) -> Scenario:
    return parse_scenario(QUICK.replace("REPEAT", f"repeat: {str(repeat).lower()}"))


def carry_out(log: Log, operations: list[director.Operation], now: int) -> None:
    """What the runner asks the gateway for, on the engine."""
    engine = log.engine
    for operation in operations:
        if isinstance(operation, StartRound):
            ends_at = now + round(operation.duration_seconds * SECOND)
            log(engine.start_round(operation.number, ends_at, operation.reset, now), now)
        elif isinstance(operation, EndRound):
            next_at = now + round(operation.next_round_in_seconds * SECOND)
            log(engine.end_round(operation.number, now, next_at if next_at > now else 0), now)
        elif isinstance(operation, OpenMarket):
            log(engine.open_market(now), now)
        elif isinstance(operation, CloseMarket):
            log(engine.close_market(now), now)
        elif isinstance(operation, PublishNews):
            shock = NewsShock(operation.price_change, operation.volatility_multiplier, 0.0)
            events = engine.publish_news(
                operation.news_id, operation.headline, operation.symbols, shock, now
            )
            log(events, now)
        elif isinstance(operation, FinishScenario):
            log(engine.set_scenario(STOPPED, now), now)


def running(scenario: Scenario) -> Log:
    log = opened_market()
    log(log.engine.set_scenario(LOADED, 0, name=scenario.name, seed=1, rounds=2))
    log(log.engine.set_scenario(RUNNING, 0))
    return log


def step(log: Log, scenario: Scenario, seconds: float) -> list[director.Operation]:
    now = round(seconds * SECOND)
    operations = due_operations(scenario, log.state, now)
    carry_out(log, operations, now)
    return operations


def test_nothing_to_do_unless_this_scenario_is_running() -> None:
    scenario = quick()
    log = opened_market()
    assert due_operations(scenario, log.state, 0) == []
    log(log.engine.set_scenario(LOADED, 0, name="other", seed=1))
    log(log.engine.set_scenario(RUNNING, 0))
    assert due_operations(scenario, log.state, 10 * SECOND) == []


def test_rounds_open_and_close_on_the_schedule() -> None:
    scenario = quick()
    log = running(scenario)
    assert step(log, scenario, 0) == [StartRound(1, 30.0, False)]
    assert log.state.round == 1 and log.state.round_open
    assert step(log, scenario, 1) == []  # the first news is due at 5 s
    [news] = step(log, scenario, 5)
    assert isinstance(news, PublishNews) and news.news_id.endswith("-1-1")
    assert step(log, scenario, 6) == []
    assert step(log, scenario, 30) == [CloseMarket(), EndRound(1, 10.0)]
    assert not log.state.market_open and not log.state.round_open
    assert step(log, scenario, 35) == []
    assert step(log, scenario, 40) == [StartRound(2, 20.0, True), OpenMarket()]
    assert log.state.round == 2 and log.state.market_open
    [late_news] = step(log, scenario, 45)
    assert isinstance(late_news, PublishNews) and late_news.headline == "ACME loses it"
    assert step(log, scenario, 60) == [CloseMarket(), EndRound(2, 0.0)]
    assert step(log, scenario, 61) == [FinishScenario()]
    assert log.state.scenario.state == STOPPED
    assert step(log, scenario, 70) == []


def test_a_repeated_look_before_the_log_answers_asks_for_nothing_new() -> None:
    scenario = quick()
    log = running(scenario)
    first = due_operations(scenario, log.state, 0)
    assert due_operations(scenario, log.state, 0) == first
    carry_out(log, first, 0)
    carry_out(log, first, 0)  # the engine refuses the second start: nothing changes
    assert log.state.round == 1
    assert due_operations(scenario, log.state, 0) == []


def test_a_director_away_does_only_what_is_still_missing() -> None:
    scenario = quick()
    log = running(scenario)
    step(log, scenario, 0)
    # Away from 1 s to 42 s: round one is over, round two open, both news are due only once.
    operations = step(log, scenario, 42)
    assert operations[:4] == [
        CloseMarket(),
        EndRound(1, 0.0),
        StartRound(2, 18.0, True),
        OpenMarket(),
    ]
    assert [op.headline for op in operations if isinstance(op, PublishNews)] == [
        "ACME wins a contract"
    ]
    assert log.state.round == 2
    assert step(log, scenario, 46)[0].headline == "ACME loses it"
    assert step(log, scenario, 47) == []


def test_a_repeating_schedule_numbers_rounds_on_and_repeats_its_news() -> None:
    scenario = quick(repeat=True)
    assert scenario.schedule.cycle_seconds == 60
    log = running(scenario)
    for seconds in (0, 5, 30, 40, 45, 60):
        step(log, scenario, seconds)
    assert step(log, scenario, 60.5) == []
    assert log.state.round == 3 and log.state.round_open
    [news] = step(log, scenario, 65)
    assert news.news_id.endswith("-2-1") and news.headline == "ACME wins a contract"
    assert len(log.state.news) == 3
    assert scenario.schedule.next_round_after(65).number == 4


def test_stopping_winds_the_round_down() -> None:
    scenario = quick()
    log = running(scenario)
    step(log, scenario, 0)
    log(log.engine.set_scenario(STOPPED, 10 * SECOND), 10 * SECOND)
    assert due_operations(scenario, log.state, 11 * SECOND) == [CloseMarket(), EndRound(1, 0.0)]


def test_an_operation_is_known_by_what_it_does_not_by_its_remaining_time() -> None:
    assert director.identity(StartRound(2, 18.0, True)) == director.identity(
        StartRound(2, 17.95, True)
    )
    assert director.identity(StartRound(2, 18.0, True)) != director.identity(
        StartRound(3, 18.0, True)
    )
    assert director.identity(EndRound(1, 10.0)) == director.identity(EndRound(1, 9.9))
    news = PublishNews("quick-1-1-1", "h", ("ACME",), 0.01, 1.0, 0.0)
    assert director.identity(news) == ("PublishNews", "quick-1-1-1")
    assert director.identity(OpenMarket()) != director.identity(CloseMarket())
