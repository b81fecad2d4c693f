"""The fair-value model (data_svc/prices.py): pure, replayable, calibrated, linked, shockable."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_svc.draws import StepDraws
from data_svc.prices import FairValues, FairValueShock, PricePath
from data_svc.scenario import (
    Instrument,
    Jumps,
    PriceProcess,
    Regimes,
    load_scenario,
    parse_scenario,
    scenario_path,
)

DEFAULT = load_scenario(scenario_path("default"))
ETF = load_scenario(scenario_path("etf-arbitrage"))
NEWS = load_scenario(scenario_path("volatile-news"))
TWO_HOURS = 7200


def log_returns(values: list[float]) -> list[float]:
    return [math.log(b / a) for a, b in zip(values, values[1:], strict=False)]


def test_step_draws_are_a_pure_function_of_seed_series_and_step() -> None:
    draws = StepDraws(7, "ACME")
    assert draws.at(123) == StepDraws(7, "ACME").at(123)
    assert draws.at(123) != draws.at(124)
    assert draws.at(123) != StepDraws(8, "ACME").at(123)
    assert draws.at(123) != StepDraws(7, "GLOBX").at(123)
    assert all(0.0 <= u < 1.0 for u in draws.at(5))


def test_rebuilt_path_equals_the_one_advanced_step_by_step_with_news() -> None:
    """Restart continuity: advancing from 0 to step k again gives exactly the same values,
    regime and volatility, news applied along the way included (scenario and live news)."""
    live = FairValues(NEWS, seed=11)
    timeline = [FairValueShock.from_news(news, NEWS.step_seconds) for news in NEWS.news]
    extra = FairValueShock(
        2222, ("BOOM",), price_change=0.01, volatility_multiplier=1.5, duration_steps=90
    )
    pending = sorted([*timeline, extra], key=lambda shock: shock.step)
    for step in range(1, 3601):
        while pending and pending[0].step == step:
            live.advance_to(step)
            live.apply(pending.pop(0))
        live.advance_to(step)
        if step % 600 == 0 or step in (1499, 1500, 1501, 2222, 2223):
            rebuilt = FairValues.rebuild(NEWS, 11, step, live.news_applied)
            assert rebuilt.snapshot() == live.snapshot(), step
            for symbol in NEWS.symbols:
                assert rebuilt.volatility(symbol) == live.volatility(symbol)
                assert rebuilt.paths[symbol].turbulent == live.paths[symbol].turbulent


def test_advancing_in_big_jumps_or_single_steps_gives_the_same_path() -> None:
    by_step = FairValues(DEFAULT, seed=3)
    by_jump = FairValues(DEFAULT, seed=3)
    for step in range(1, 1801):
        by_step.advance_to(step)
    by_jump.advance_to(900)
    by_jump.advance_to(1800)
    assert by_step.snapshot() == by_jump.snapshot()


def test_news_applied_late_is_refused_so_a_rebuild_is_needed() -> None:
    fair_values = FairValues(DEFAULT, seed=1)
    fair_values.advance_to(100)
    with pytest.raises(ValueError, match="rebuild"):
        fair_values.apply(FairValueShock(99, ("ACME",), price_change=0.01))


def test_a_price_change_scales_the_path_from_its_step_on() -> None:
    shock = FairValueShock(600, ("ACME", "UMBRA"), price_change=-0.05)
    plain = FairValues(DEFAULT, seed=5)
    shocked = FairValues(DEFAULT, seed=5)
    shocked.apply(shock)
    for step in (599, 600, 601, 1800):
        plain.advance_to(step)
        shocked.advance_to(step)
        for symbol in ("ACME", "UMBRA"):
            ratio = shocked.value(symbol) / plain.value(symbol)
            assert ratio == pytest.approx(0.95 if step >= 600 else 1.0, rel=1e-9), (symbol, step)
        assert shocked.value("GLOBX") == plain.value("GLOBX")


SMOOTH = parse_scenario(
    """
instruments:
  - symbol: ACME
    start_price: 50
    process: {kind: gbm, volatility: 0.02, regimes: {turbulent_multiplier: 2}}
schedule:
  rounds: [{length_seconds: 3600}]
""",
    "smooth.yaml",
)
"""One symbol without jumps: every move is the diffusion's, which news multiplies."""


def test_a_volatility_shock_multiplies_the_moves_for_its_duration_only() -> None:
    shock = FairValueShock(1000, ("ACME",), volatility_multiplier=3.0, duration_steps=300)
    plain = FairValues(SMOOTH, seed=9)
    shocked = FairValues(SMOOTH, seed=9)
    shocked.apply(shock)
    plain_values, shocked_values = [], []
    for step in range(1, 2001):
        plain.advance_to(step)
        shocked.advance_to(step)
        plain_values.append(plain.value("ACME"))
        shocked_values.append(shocked.value("ACME"))
        if step == 1000:
            assert shocked.volatility("ACME") == pytest.approx(3 * plain.volatility("ACME"))
    plain_moves, shocked_moves = log_returns(plain_values), log_returns(shocked_values)
    inside = range(1000, 1300)  # the moves of steps 1001..1300
    plain_variance = sum(plain_moves[i] ** 2 for i in inside)
    assert sum(shocked_moves[i] ** 2 for i in inside) == pytest.approx(9 * plain_variance, rel=0.01)
    after = range(1300, 1999)
    assert [shocked_moves[i] for i in after] == pytest.approx([plain_moves[i] for i in after])


def test_an_etf_is_worth_its_basket_and_a_pair_its_ratio() -> None:
    fair_values = FairValues(ETF, seed=2)
    for step in (0, 1, 1000, 3600):
        fair_values.advance_to(step)
        basket = fair_values.value("ALPHA") + 2 * fair_values.value("BETA")
        basket += fair_values.value("GAMMA")
        assert fair_values.value("TRIO") == pytest.approx(basket, rel=1e-12)
        assert fair_values.value("ALPHY") == pytest.approx(2 * fair_values.value("ALPHA"))


def test_news_about_an_etf_moves_its_components() -> None:
    plain = FairValues(ETF, seed=2)
    shocked = FairValues(ETF, seed=2)
    shocked.apply(FairValueShock(10, ("TRIO",), price_change=0.02))
    plain.advance_to(20)
    shocked.advance_to(20)
    for symbol in ("ALPHA", "BETA", "GAMMA", "TRIO", "ALPHY"):
        assert shocked.value(symbol) / plain.value(symbol) == pytest.approx(1.02)


def test_bars_are_interpolated_and_held_after_the_last(tmp_path: Path) -> None:
    (tmp_path / "bars.csv").write_text("time,close\n0,10.00\n60,11.00\n120,10.50\n")
    text = """
instruments:
  - symbol: REPLAY
    process: {kind: bars, file: bars.csv}
schedule:
  rounds: [{length_seconds: 600}]
"""
    scenario = parse_scenario(text, "replay.yaml", tmp_path)
    fair_values = FairValues(scenario, seed=1)
    expected = {0: 10.0, 30: 10.5, 60: 11.0, 90: 10.75, 120: 10.5, 500: 10.5}
    for step, value in expected.items():
        fair_values.advance_to(step)
        assert fair_values.value("REPLAY") == pytest.approx(value)
    fair_values.apply(FairValueShock(500, ("REPLAY",), price_change=0.1))
    assert fair_values.value("REPLAY") == pytest.approx(11.55)


def test_realized_volatility_of_the_fair_value_averages_the_configured_one() -> None:
    """Twenty seeds of the default scenario's fair values over two hours: the mean of the
    1-minute realized volatility over configured is 1 (regimes and jumps included)."""
    ratios = []
    for seed in range(20):
        fair_values = FairValues(DEFAULT, seed)
        paths = {symbol: [fair_values.value(symbol)] for symbol in DEFAULT.symbols}
        for minute in range(1, TWO_HOURS // 60 + 1):
            fair_values.advance_to(minute * 60)
            for symbol, values in paths.items():
                values.append(fair_values.value(symbol))
        for instrument in DEFAULT.instruments:
            returns = log_returns(paths[instrument.symbol])
            realized = math.sqrt(sum(r * r for r in returns) / len(returns) * 60)
            ratios.append(realized / instrument.process.volatility)
    mean = sum(ratios) / len(ratios)
    print(f"fair value: realized/configured volatility over {len(ratios)} paths: mean {mean:.3f}")
    assert mean == pytest.approx(1.0, abs=0.05)


def test_advancing_is_fast_enough_to_rebuild_a_long_scenario_at_once() -> None:
    """A restart rebuilds the path from step 0: measure steps per millisecond of one series."""
    path = PricePath(DEFAULT.instrument("ACME"), seed=1, step_seconds=1.0)
    steps = 50_000
    started = time.perf_counter()
    path.advance_to(steps)
    per_ms = steps / ((time.perf_counter() - started) * 1000)
    print(f"fair value: {per_ms:.0f} steps per ms of one series")
    assert per_ms > 200


processes = st.builds(
    PriceProcess,
    kind=st.sampled_from(["gbm", "mean_reverting"]),
    volatility=st.floats(0.0, 0.5),
    drift=st.floats(-0.2, 0.2),
    mean_reversion=st.floats(0.0, 20.0),
    jumps=st.builds(Jumps, st.floats(0, 20), st.floats(-0.02, 0.02), st.floats(0, 0.02)),
    regimes=st.builds(Regimes, st.floats(1, 5), st.floats(0.5, 60), st.floats(0.5, 60)),
)


@settings(max_examples=60, deadline=None)
@given(
    process=processes,
    start_price=st.floats(0.01, 10_000),
    seed=st.integers(0, 2**32),
    step_seconds=st.sampled_from([0.5, 1.0, 5.0, 60.0]),
    shocks=st.lists(
        st.tuples(
            st.integers(0, 500), st.floats(-0.9, 2.0), st.floats(0.1, 10), st.integers(0, 50)
        ),
        max_size=4,
    ),
)
def test_fair_values_stay_positive_and_finite(
    process: PriceProcess,
    start_price: float,
    seed: int,
    step_seconds: float,
    shocks: list[tuple[int, float, float, int]],
) -> None:
    if process.jumps.variance_per_hour >= process.volatility**2:
        process = dataclasses.replace(process, jumps=Jumps())
    path = PricePath(Instrument("X", "0.01", 1, start_price, process), seed, step_seconds)
    for step, price_change, multiplier, duration in sorted(shocks):
        path.shock(step, price_change, multiplier, duration)
    for step in range(0, 501, 50):
        path.advance_to(step)
        assert math.isfinite(path.value) and path.value > 0
        assert math.isfinite(path.volatility) and path.volatility >= 0
