"""The simulated market (tests/simulated_market.py on the pure engine): the stylized facts of a
living market, measured on tapes of the default scenario, and replayability.

Five seeds of two simulated hours each. Each seed is checked on its own where one seed's data
decides the question (trades every minute, spreads, the market's realized volatility and
kurtosis, averaged over its symbols); each symbol's volatility and kurtosis over the five seeds
together; and volatility clustering (positive autocorrelation of absolute 1-minute returns at
lags 1-5) over all seeds and symbols, because 119 returns of one symbol cannot show a lag-5
autocorrelation of about 0.05 reliably (its standard error is 0.09). docs/simulator.md gives
the failure rates of each check measured over many seeds. The figures are printed.
"""

from __future__ import annotations

import hashlib
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from data_svc.scenario import Scenario, load_scenario, scenario_path, shipped_scenarios
from tests.simulated_market import MINUTE_NS, Sample, Simulation, Tape, simulate

SEEDS = (1, 2, 3, 4, 5)
TWO_HOURS = 7200
LAGS = (1, 2, 3, 4, 5)
VOLATILITY_BAND = 0.25
MEDIAN_SPREAD_TICKS = 6
ETF_BAND_BPS = 50
DEFAULT = load_scenario(scenario_path("default"))


def mid_returns(tape: Tape, symbol: str) -> list[float]:
    """Log returns of the mid between consecutive minute samples."""
    mids = [sample.mid for sample in tape.samples_of(symbol)]
    return [math.log(b / a) for a, b in zip(mids, mids[1:], strict=False)]


def realized_volatility(returns: list[float]) -> float:
    """Per hour, from 1-minute returns."""
    return math.sqrt(sum(r * r for r in returns) / len(returns) * 60)


def excess_kurtosis(returns: list[float]) -> float:
    mean = statistics.fmean(returns)
    deviations = [r - mean for r in returns]
    variance = statistics.fmean(d * d for d in deviations)
    return statistics.fmean(d**4 for d in deviations) / variance**2 - 3


def autocorrelation(values: list[float], lag: int) -> float:
    mean = statistics.fmean(values)
    deviations = [v - mean for v in values]
    total = sum(d * d for d in deviations)
    return sum(a * b for a, b in zip(deviations, deviations[lag:], strict=False)) / total


class Figures:
    """What one tape of the default scenario measured, per symbol."""

    def __init__(self, tape: Tape, scenario: Scenario, seconds: float) -> None:
        self.tape = tape
        self.seed = tape.seed
        self.seconds = seconds
        self.trades = len(tape.trades)
        self.least_trades_per_minute: dict[str, int] = {}
        self.median_spread: dict[str, float] = {}
        self.volatility_ratio: dict[str, float] = {}
        self.kurtosis: dict[str, float] = {}
        self.clustering: dict[str, list[float]] = {}
        minutes = round(tape.duration_seconds) // 60
        for instrument in scenario.instruments:
            symbol = instrument.symbol
            per_minute = [0] * minutes
            for trade in tape.trades_of(symbol):
                per_minute[trade.time // MINUTE_NS] += 1
            self.least_trades_per_minute[symbol] = min(per_minute)
            spreads = [sample.spread for sample in tape.samples_of(symbol)]
            self.median_spread[symbol] = statistics.median(spreads) if None not in spreads else 0
            returns = mid_returns(tape, symbol)
            assert instrument.process is not None
            self.volatility_ratio[symbol] = (
                realized_volatility(returns) / instrument.process.volatility
            )
            self.kurtosis[symbol] = excess_kurtosis(returns)
            absolute = [abs(r) for r in returns]
            self.clustering[symbol] = [autocorrelation(absolute, lag) for lag in LAGS]

    @property
    def market_volatility_ratio(self) -> float:
        return statistics.fmean(self.volatility_ratio.values())

    @property
    def market_kurtosis(self) -> float:
        return statistics.fmean(self.kurtosis.values())

    def lines(self) -> Iterator[str]:
        yield (
            f"seed {self.seed}: {self.seconds:.1f} s for {TWO_HOURS // 3600} simulated hours, "
            f"{self.trades} trades; realized/configured volatility "
            f"{self.market_volatility_ratio:.3f}, excess kurtosis {self.market_kurtosis:.2f} "
            "(means over symbols)"
        )
        for symbol, ratio in self.volatility_ratio.items():
            acf = " ".join(f"{value:+.3f}" for value in self.clustering[symbol])
            yield (
                f"    {symbol:8} trades/minute >= {self.least_trades_per_minute[symbol]:2}, "
                f"median spread {self.median_spread[symbol]:g} ticks, volatility x{ratio:.3f}, "
                f"kurtosis {self.kurtosis[symbol]:+.2f}, |r| autocorrelation lags 1-5: {acf}"
            )


@pytest.fixture(scope="module")
def figures() -> dict[int, Figures]:
    measured = {}
    for seed in SEEDS:
        started = time.perf_counter()
        tape = simulate(DEFAULT, seed, TWO_HOURS)
        measured[seed] = Figures(tape, DEFAULT, time.perf_counter() - started)
    return measured


def test_the_figures_of_the_default_market(
    figures: dict[int, Figures], capsys: pytest.CaptureFixture[str]
) -> None:
    """Not a check: prints every figure the checks below use, whatever -s or -r says."""
    with capsys.disabled():
        print()
        for measured in figures.values():
            for line in measured.lines():
                print(line)
        pooled = pooled_clustering(figures)
        print(
            "all seeds and symbols: |r| autocorrelation lags 1-5: "
            + " ".join(f"{v:+.3f}" for v in pooled)
        )
        total = sum(measured.seconds for measured in figures.values())
        print(f"{len(figures)} runs of {TWO_HOURS} simulated seconds in {total:.1f} s")


def test_every_symbol_trades_in_every_minute(figures: dict[int, Figures]) -> None:
    for seed, measured in figures.items():
        assert min(measured.least_trades_per_minute.values()) >= 1, (
            seed,
            measured.least_trades_per_minute,
        )


def test_the_book_is_two_sided_and_its_spread_a_few_ticks(figures: dict[int, Figures]) -> None:
    for seed, measured in figures.items():
        for sample in measured.tape.samples:
            assert sample.bid and sample.ask and sample.ask > sample.bid, (seed, sample)
        for symbol, median in measured.median_spread.items():
            assert 1 <= median <= MEDIAN_SPREAD_TICKS, (seed, symbol, median)


def test_the_market_follows_the_fair_value(figures: dict[int, Figures]) -> None:
    """Market makers quote around it and value traders trade toward it: the mid never strays
    more than 1% from the fair value at a minute sample."""
    for seed, measured in figures.items():
        for sample in measured.tape.samples:
            gap = abs(sample.mid - sample.fair_value) / sample.fair_value
            assert gap < 0.01, (seed, sample)


def test_realized_volatility_is_the_configured_one(figures: dict[int, Figures]) -> None:
    """Within 25%: the market's (mean over symbols) for each seed, each symbol's over all seeds
    (the root mean square of its five ratios)."""
    for seed, measured in figures.items():
        ratio = measured.market_volatility_ratio
        assert abs(ratio - 1) <= VOLATILITY_BAND, (seed, measured.volatility_ratio)
    for symbol in DEFAULT.symbols:
        ratios = [measured.volatility_ratio[symbol] for measured in figures.values()]
        pooled = math.sqrt(statistics.fmean(ratio * ratio for ratio in ratios))
        assert abs(pooled - 1) <= VOLATILITY_BAND, (symbol, ratios)


def test_returns_have_fat_tails(figures: dict[int, Figures]) -> None:
    """Excess kurtosis of 1-minute returns above 0: the market's for each seed, each symbol's
    over all seeds."""
    for seed, measured in figures.items():
        assert measured.market_kurtosis > 0, (seed, measured.kurtosis)
    for symbol in DEFAULT.symbols:
        kurtoses = [measured.kurtosis[symbol] for measured in figures.values()]
        assert statistics.fmean(kurtoses) > 0, (symbol, kurtoses)


def pooled_clustering(figures: dict[int, Figures]) -> list[float]:
    series = [acf for measured in figures.values() for acf in measured.clustering.values()]
    return [statistics.fmean(acf[index] for acf in series) for index in range(len(LAGS))]


def test_volatility_clusters(figures: dict[int, Figures]) -> None:
    """Absolute 1-minute returns are positively autocorrelated at lags 1 to 5 (all seeds and
    symbols together)."""
    pooled = pooled_clustering(figures)
    assert all(value > 0 for value in pooled), pooled


def test_the_same_seed_gives_the_same_tape_byte_for_byte(figures: dict[int, Figures]) -> None:
    first = figures[1].tape.to_bytes()
    assert simulate(DEFAULT, 1, TWO_HOURS).to_bytes() == first
    assert figures[2].tape.to_bytes() != first


def test_the_tape_does_not_depend_on_the_process(tmp_path: Path) -> None:
    """Another interpreter with another hash seed gives the same bytes (no dict/set order or
    clock inside). It imports exactly what this one does."""
    tape = simulate(DEFAULT, 7, 600).to_bytes()
    code = (
        "import hashlib, sys\n"
        "from data_svc.scenario import load_scenario, scenario_path\n"
        "from tests.simulated_market import simulate\n"
        "tape = simulate(load_scenario(scenario_path('default')), 7, 600).to_bytes()\n"
        "sys.stdout.write(hashlib.sha256(tape).hexdigest())\n"
    )
    search_path = os.pathsep.join(entry for entry in sys.path if entry)
    environment = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": search_path}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert result.stdout == hashlib.sha256(tape).hexdigest()


def test_the_etf_trades_within_a_band_of_its_basket(capsys: pytest.CaptureFixture[str]) -> None:
    """etf-arbitrage: the ETF's mid stays within 50 bps of its basket's (the components' mids
    times their shares), the ADR's within 50 bps of twice ALPHA's, yet they stray far enough
    that the book can be crossed against the basket now and then (arbitrage exists)."""
    scenario = load_scenario(scenario_path("etf-arbitrage"))
    tape = simulate(scenario, 1)
    rows: dict[int, dict[str, Sample]] = {}
    for sample in tape.samples:
        assert sample.bid and sample.ask, sample
        rows.setdefault(sample.time, {})[sample.symbol] = sample
    etf = scenario.instrument("TRIO")
    assert etf.basket is not None
    shares = dict(etf.basket.shares)
    etf_gaps, pair_gaps, crossings = [], [], 0
    for row in rows.values():
        basket_mid = sum(count * row[part].mid for part, count in shares.items())
        etf_gaps.append((row["TRIO"].mid - basket_mid) / basket_mid * 10_000)
        pair_mid = 2 * row["ALPHA"].mid
        pair_gaps.append((row["ALPHY"].mid - pair_mid) / pair_mid * 10_000)
        basket_bid = sum(count * row[part].bid for part, count in shares.items())
        basket_ask = sum(count * row[part].ask for part, count in shares.items())
        crossings += row["TRIO"].bid > basket_ask or row["TRIO"].ask < basket_bid
    with capsys.disabled():
        print(
            f"\netf-arbitrage seed 1: TRIO - basket max {max(map(abs, etf_gaps)):.1f} bps "
            f"(sd {statistics.pstdev(etf_gaps):.1f}), ALPHY - 2 ALPHA max "
            f"{max(map(abs, pair_gaps)):.1f} bps (sd {statistics.pstdev(pair_gaps):.1f}); "
            f"{crossings} of {len(rows)} minute samples crossable against the basket"
        )
    assert max(map(abs, etf_gaps)) <= ETF_BAND_BPS
    assert max(map(abs, pair_gaps)) <= ETF_BAND_BPS
    assert crossings >= 1


def test_rounds_and_breaks_follow_the_schedule() -> None:
    """calm: two rounds with a break between; nothing trades in the break, resting orders
    expire at each close, and the engine's rounds start and end with the schedule."""
    scenario = load_scenario(scenario_path("calm"))
    simulation = Simulation(scenario, 3)
    tape = simulation.run()
    first, second = scenario.schedule.sessions()
    in_break = [t for t in tape.trades if first.closes_at * 1e9 <= t.time < second.opens_at * 1e9]
    assert not in_break
    assert any(t.time < first.closes_at * 1e9 for t in tape.trades)
    assert any(t.time >= second.opens_at * 1e9 for t in tape.trades)
    competition = simulation.engine.competition
    assert (competition.round, competition.round_open) == (2, False)
    assert not simulation.engine.market_open and not simulation.engine.open_orders


def test_news_is_published_on_the_exchange() -> None:
    tape = simulate(load_scenario(scenario_path("volatile-news")), 1)
    assert dict(tape.counts)["news"] == 5


@pytest.mark.parametrize("name", shipped_scenarios())
def test_every_shipped_scenario_runs_and_trades(name: str) -> None:
    """Ten simulated minutes of each: every symbol trades, and no bot order is rejected."""
    scenario = load_scenario(scenario_path(name))
    tape = simulate(scenario, 1, 600)
    assert {trade.symbol for trade in tape.trades} == set(scenario.symbols)
    counts = dict(tape.counts)
    assert not [name for name in counts if name.startswith(("rejected", "refused"))], counts
