"""Scenario files (data_svc/scenario.py): the shipped ones load, mistakes are named precisely."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from data_svc.agents import MarketMakerParams, NoiseTraderParams
from data_svc.scenario import (
    ScenarioError,
    load_scenario,
    parse_scenario,
    scenario_path,
    shipped_scenarios,
)

VALID = """\
name: tiny
instruments:
  - symbol: ACME
    tick_size: 0.01
    start_price: 50
    process:
      kind: gbm
      volatility: 0.02
      jumps: {rate_per_hour: 2, std: 0.003}
  - symbol: FUND
    basket: {ACME: 2}
schedule:
  rounds:
    - {name: One, length_seconds: 600, break_seconds: 60}
    - {length_seconds: 600}
rules:
  position_limit: 1000
  max_open_orders: 10
bots:
  - kind: market_maker
    rate: 1
    position: 500
    params: {levels: 2}
  - kind: noise
    symbols: [ACME]
    count: 2
    rate: 0.1
news:
  - time_seconds: 300
    headline: ACME wins a contract
    symbols: [ACME]
    price_change: 0.02
"""


def line_of(text: str, fragment: str) -> int:
    return text[: text.index(fragment)].count("\n") + 1


def test_every_shipped_scenario_loads() -> None:
    names = shipped_scenarios()
    assert {"default", "calm", "volatile-news", "etf-arbitrage"} <= set(names)
    for name in names:
        scenario = load_scenario(scenario_path(name))
        assert scenario.name == name
        assert scenario.instruments and scenario.bots
        print(
            f"scenario {name}: {len(scenario.instruments)} instruments, {len(scenario.bots)} "
            f"bot groups, {scenario.schedule.end_seconds:g} s, {len(scenario.news)} news"
        )


def test_a_valid_file_gives_frozen_values_with_defaults() -> None:
    scenario = parse_scenario(VALID, "tiny.yaml")
    acme, fund = scenario.instruments
    assert acme.tick_size == "0.01" and acme.lot_size == 1 and acme.tick_cash == 100
    assert acme.process is not None and acme.process.jumps.rate_per_hour == 2
    assert acme.process.regimes.turbulent_multiplier == 1.0
    assert fund.basket is not None and fund.basket.shares == (("ACME", 2.0),)
    assert [s.opens_at for s in scenario.schedule.sessions()] == [0, 660]
    assert scenario.schedule.end_seconds == 1260
    assert scenario.schedule.rounds[1].name == "Round 2"
    maker, noise = scenario.bots
    assert maker.symbols == ("ACME", "FUND") and maker.cash == 100_000
    assert maker.params == MarketMakerParams(levels=2)
    assert noise.params == NoiseTraderParams() and noise.count == 2
    assert scenario.news[0].price_change == 0.02
    with pytest.raises(AttributeError):
        scenario.name = "other"  # type: ignore[misc]


def test_the_ranking_is_pnl_unless_the_rules_name_sharpe() -> None:
    assert parse_scenario(VALID, "tiny.yaml").rules.ranking == "pnl"
    text = VALID.replace("  max_open_orders: 10", "  max_open_orders: 10\n  ranking: sharpe")
    assert parse_scenario(text, "tiny.yaml").rules.ranking == "sharpe"
    assert load_scenario(scenario_path("volatile-news")).rules.ranking == "sharpe"


CASES = [
    # (replace this, with that, error pattern, the line it must name: fragment of the result)
    (
        "tick_size: 0.01",
        'tick_size: "abc"',
        r'instruments\[0\]\.tick_size must be a positive number, a multiple of 0\.0001, got "abc"',
        'tick_size: "abc"',
    ),
    (
        "tick_size: 0.01",
        "tick_size: 0.00005",
        r"instruments\[0\]\.tick_size must be a positive number, a multiple of 0\.0001, "
        r"got 0\.00005",
        "tick_size: 0.00005",
    ),
    (
        "name: tiny",
        "name: tiny\ncolour: red",
        r"colour is not a field of a scenario; allowed: name, description, step_seconds, "
        r"instruments, schedule",
        "colour: red",
    ),
    (
        "volatility: 0.02",
        "volatilty: 0.02",
        r"instruments\[0\]\.process\.volatilty is not a field of a gbm process; allowed: kind, "
        r"volatility, drift, jumps, regimes",
        "volatilty",
    ),
    (
        "kind: gbm",
        "kind: mean_reverting\n      drift: 0.1",
        r"instruments\[0\]\.process\.drift is not a field of a mean_reverting process",
        "drift: 0.1",
    ),
    (
        "    start_price: 50\n",
        "",
        r"instruments\[0\]\.start_price is required",
        "symbol: ACME",
    ),
    (
        "    count: 2",
        "    count: two",
        r'bots\[1\]\.count must be a whole number 0 or more, got "two"',
        "count: two",
    ),
    (
        "    rate: 0.1",
        "    rate: 0",
        r"bots\[1\]\.rate must be a number above 0 and at most 1000, got 0",
        "rate: 0\n",
    ),
    (
        "symbols: [ACME]",
        "symbols: [ACME, NOPE]",
        r'bots\[1\]\.symbols\[1\] must be one of the instruments\' symbols: ACME, FUND, got "NOPE"',
        "symbols: [ACME, NOPE]",
    ),
    (
        "basket: {ACME: 2}",
        "basket: {ACME: 2, ZED: 1}",
        r"instruments\[1\]\.basket key must be one of the instruments' symbols",
        "basket:",
    ),
    (
        "params: {levels: 2}",
        "params: {levels: 2, spread: 3}",
        r"bots\[0\]\.params\.spread is not a field of the market_maker parameters; allowed: "
        r"half_spread_ticks",
        "params: {levels: 2, spread: 3}",
    ),
    (
        "params: {levels: 2}",
        "params: {levels: 2.5}",
        r"bots\[0\]\.params\.levels must be a whole number at least 1, got 2\.5",
        "params: {levels: 2.5}",
    ),
    (
        "params: {levels: 2}",
        "params: {levels: 6}",
        r"bots\[0\]\.params\.levels: 12 quotes exceed the rules' max_open_orders 10",
        "  - kind: market_maker",
    ),
    (
        "position: 500",
        "position: 5000",
        r"bots\[0\]\.position 5000 is above the rules' position_limit 1000",
        "position: 5000",
    ),
    (
        "kind: noise",
        "kind: nosie",
        r"bots\[1\]\.kind must be one of market_maker, noise, momentum, value, got \"nosie\"",
        "kind: nosie",
    ),
    (
        "jumps: {rate_per_hour: 2, std: 0.003}",
        "jumps: {rate_per_hour: 200, std: 0.003}",
        r"instruments\[0\]\.process\.jumps: rate_per_hour x \(mean\^2 \+ std\^2\) = 0\.0018 per "
        r"hour must be less than volatility\^2 = 0\.0004",
        "kind: gbm",
    ),
    (
        "    basket: {ACME: 2}",
        "    basket: {ACME: 2}\n    start_price: 100",
        r"instruments\[1\]\.start_price is derived from its basket; leave it out",
        "start_price: 100",
    ),
    (
        "    basket: {ACME: 2}",
        "    pair: {of: FUND}",
        r"instruments\[1\]\.pair\.of: FUND cannot be linked to itself",
        "pair: {of: FUND}",
    ),
    (
        "  - symbol: FUND",
        "  - symbol: fund",
        r"instruments\[1\]\.symbol must be a symbol: an upper-case letter, then up to 11 "
        r'upper-case letters, digits or \., got "fund"',
        "symbol: fund",
    ),
    (
        "price_change: 0.02",
        "volatility_multiplier: 2",
        r"news\[0\]\.duration_seconds is required with a volatility_multiplier",
        "  - time_seconds: 300",
    ),
    (
        "price_change: 0.02",
        "price_change: -1.5",
        r"news\[0\]\.price_change must be a number above -1 and at most 10, got -1\.5",
        "price_change: -1.5",
    ),
    (
        "    - {length_seconds: 600}",
        "    - {length_seconds: 600, break: 60}",
        r"schedule\.rounds\[1\]\.break is not a field of a round; allowed: name, length_seconds, "
        r"break_seconds",
        "{length_seconds: 600, break: 60}",
    ),
    (
        "rules:",
        "schedule:\n  rounds: [{length_seconds: 5}]\nrules:",
        r"schedule is given twice \(first on line 12\)",
        "schedule:\n  rounds: [{length_seconds: 5}]",
    ),
    (
        "  max_open_orders: 10",
        "  max_open_orders: 10\n  message_rate_per_second: 2.5",
        r"rules\.message_rate_per_second must be a whole number 0 or more, got 2\.5",
        "message_rate_per_second: 2.5",
    ),
    (
        "  max_open_orders: 10",
        "  max_open_orders: 10\n  ranking: drawdown",
        r'rules\.ranking must be one of pnl, sharpe, got "drawdown"',
        "ranking: drawdown",
    ),
    (
        "  max_open_orders: 10",
        "  max_open_orders: [10",
        r"not valid YAML",
        "  max_open_orders: [10",
    ),
]


@pytest.mark.parametrize(("old", "new", "pattern", "at"), CASES, ids=[c[2][:40] for c in CASES])
def test_an_invalid_file_names_the_line_the_field_and_what_is_allowed(
    old: str, new: str, pattern: str, at: str
) -> None:
    assert old in VALID
    text = VALID.replace(old, new, 1)
    with pytest.raises(ScenarioError) as raised:
        parse_scenario(text, "scenarios/x.yaml")
    message = str(raised.value)
    print(message)
    line = line_of(text, at)
    if pattern == "not valid YAML":
        assert re.match(r"scenarios/x\.yaml line \d+: not valid YAML", message), message
        return
    assert message.startswith(f"scenarios/x.yaml line {line}: "), message
    assert re.search(pattern, message), message


def test_a_missing_section_is_named() -> None:
    with pytest.raises(ScenarioError, match=r"tiny\.yaml line 1: schedule is required"):
        parse_scenario(VALID.replace("schedule:", "timetable:"), "tiny.yaml")
    with pytest.raises(ScenarioError, match=r"tiny\.yaml: the file is empty"):
        parse_scenario("", "tiny.yaml")


def test_a_bars_file_is_checked_with_its_own_line_numbers(tmp_path: Path) -> None:
    scenario = tmp_path / "replay.yaml"
    scenario.write_text(
        "instruments:\n"
        "  - symbol: REPLAY\n"
        "    process: {kind: bars, file: bars.csv}\n"
        "schedule:\n"
        "  rounds: [{length_seconds: 60}]\n"
    )
    bars = tmp_path / "bars.csv"
    bars.write_text("time,close\n0,10\n60,11\n30,12\n")
    with pytest.raises(
        ScenarioError, match=r"bars\.csv line 4: times must increase, got 30 after 60"
    ):
        load_scenario(scenario)
    bars.write_text("time,close\n0,10\n60,-1\n")
    with pytest.raises(ScenarioError, match=r"bars\.csv line 3: a bar is time .* got '60,-1'"):
        load_scenario(scenario)
    bars.write_text("when,price\n0,10\n")
    with pytest.raises(
        ScenarioError, match=r"bars\.csv line 1: a bars file starts with the header"
    ):
        load_scenario(scenario)
    bars.unlink()
    with pytest.raises(
        ScenarioError, match=r"replay\.yaml line 3: instruments\[0\]\.process\.file"
    ):
        load_scenario(scenario)
    bars.write_text("time,close\n0,10\n60,11\n")
    assert load_scenario(scenario).instrument("REPLAY").process.bars == ((0, 10), (60, 11))


def test_the_digest_changes_with_the_file_and_its_bars(tmp_path: Path) -> None:
    """A restarted simulator compares it with the one the log recorded."""
    scenario = tmp_path / "replay.yaml"
    scenario.write_text(
        "instruments:\n"
        "  - symbol: REPLAY\n"
        "    process: {kind: bars, file: bars.csv}\n"
        "schedule:\n"
        "  rounds: [{length_seconds: 60}]\n"
    )
    bars = tmp_path / "bars.csv"
    bars.write_text("time,close\n0,10\n")
    first = load_scenario(scenario).digest
    assert len(first) == 64 and load_scenario(scenario).digest == first
    bars.write_text("time,close\n0,10.5\n")
    second = load_scenario(scenario).digest
    assert second != first
    scenario.write_text(scenario.read_text().replace("60}", "120}"))
    assert load_scenario(scenario).digest not in (first, second)
