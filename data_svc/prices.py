"""Fair values: each instrument's hidden true price, advanced in fixed steps of scenario time.

An instrument with a process of its own follows geometric Brownian motion (or a mean-reverting
log value, ABIDES' sparse mean-reverting oracle) whose volatility switches between a calm and a
turbulent regime (a hidden Markov state, so large moves cluster), plus Poisson jumps. The draws
of step k come from `StepDraws(seed, symbol).at(k)`, so the path is a pure function of
(scenario, seed, step, the news applied so far): a restarted simulator rebuilds it by advancing
again from step 0. Linked instruments have no randomness of their own: an ETF is worth its
basket, an ADR-style pair a ratio of its underlying. News shocks jump the value and/or multiply
the volatility for a while, from their step on.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

from data_svc.draws import StepDraws
from data_svc.scenario import Instrument, News, Scenario

SECONDS_PER_HOUR = 3600.0
NS_PER_SECOND = 1_000_000_000
TWO_PI = 2.0 * math.pi
LOG_RANGE = 20.0
"""A fair value stays within e^20 (about 5e8) times its start price either way: news stacked
on news (volatility multipliers multiply) cannot drive it to 0 or infinity."""


@dataclass(frozen=True, slots=True)
class FairValueShock:
    """A news item as the price model applies it: at `step`, changing the path from there on."""

    step: int
    symbols: tuple[str, ...]
    price_change: float = 0.0
    """Relative jump of fair value: 0.03 is 3% up."""
    volatility_multiplier: float = 1.0
    duration_steps: int = 0
    """The multiplier applies to the moves of the steps after `step`, this many of them."""

    @classmethod
    def at_time(
        cls,
        time_seconds: float,
        symbols: tuple[str, ...],
        price_change: float,
        volatility_multiplier: float,
        duration_seconds: float,
        step_seconds: float,
    ) -> FairValueShock:
        """News published at a time of the scenario (from the timeline, or an organizer's, as
        the log records it) as the model applies it: from the first step at or after it."""
        return cls(
            first_step_at(time_seconds, step_seconds),
            tuple(symbols),
            price_change,
            volatility_multiplier,
            math.ceil(duration_seconds / step_seconds - 1e-9),
        )

    @classmethod
    def from_news(cls, news: News, step_seconds: float) -> FairValueShock:
        return cls.at_time(
            news.time_seconds,
            news.symbols,
            news.price_change,
            news.volatility_multiplier,
            news.duration_seconds,
            step_seconds,
        )


def first_step_at(time_seconds: float, step_seconds: float) -> int:
    """The first step at or after a time: news never reaches a value before it is published."""
    return math.ceil(time_seconds / step_seconds - 1e-9)


class PricePath:
    """One instrument with its own process (gbm or mean_reverting), one step at a time."""

    __slots__ = (
        "symbol",
        "step",
        "log_value",
        "mean_log_value",
        "turbulent",
        "_draws",
        "_mean_reverting",
        "_calm_sd",
        "_turbulent_sd",
        "_enter_turbulence",
        "_leave_turbulence",
        "_drift",
        "_reversion",
        "_jump_probability",
        "_jump_mean",
        "_jump_sd",
        "_step_hours",
        "_pending_jumps",
        "_volatility_windows",
        "_log_floor",
        "_log_ceiling",
    )

    def __init__(self, instrument: Instrument, seed: int, step_seconds: float) -> None:
        process = instrument.process
        if process is None or process.kind == "bars":
            raise ValueError(f"{instrument.symbol} has no process of its own")
        regimes = process.regimes
        jumps = process.jumps
        step_hours = step_seconds / SECONDS_PER_HOUR
        diffusion_variance = max(process.volatility**2 - jumps.variance_per_hour, 0.0)
        share = regimes.turbulent_share if regimes.turbulent_multiplier > 1 else 0.0
        multiplier = regimes.turbulent_multiplier
        calm_sd = math.sqrt(diffusion_variance / (1 - share + share * multiplier**2))
        self.symbol = instrument.symbol
        self._draws = StepDraws(seed, instrument.symbol)
        self._mean_reverting = process.kind == "mean_reverting"
        self._step_hours = step_hours
        self._calm_sd = calm_sd * math.sqrt(step_hours)
        self._turbulent_sd = self._calm_sd * multiplier
        self._enter_turbulence = 0.0
        self._leave_turbulence = 1.0
        if share:
            self._enter_turbulence = -math.expm1(-step_seconds / (regimes.calm_minutes * 60))
            self._leave_turbulence = -math.expm1(-step_seconds / (regimes.turbulent_minutes * 60))
        self._drift = process.drift * step_hours
        self._reversion = -math.expm1(-process.mean_reversion * step_hours)
        self._jump_probability = -math.expm1(-jumps.rate_per_hour * step_hours)
        self._jump_mean = jumps.mean
        self._jump_sd = jumps.std
        self._pending_jumps: dict[int, list[float]] = {}
        self._volatility_windows: list[tuple[int, int, float]] = []
        """(first step, last step, multiplier) of news volatility shocks."""
        self.step = 0
        self.log_value = math.log(instrument.start_price)
        self._log_floor = self.log_value - LOG_RANGE
        self._log_ceiling = self.log_value + LOG_RANGE
        self.mean_log_value = math.log(process.mean_price or instrument.start_price)
        self.turbulent = self._draws.at(0)[2] < share
        """Step 0 starts in the regime the long run spends that share of its time in."""

    @property
    def value(self) -> float:
        return math.exp(self.log_value)

    @property
    def volatility(self) -> float:
        """Volatility per hour of the next move's diffusion: its regime and any news multiplier."""
        step_sd = self._turbulent_sd if self.turbulent else self._calm_sd
        return step_sd * self._multiplier(self.step + 1) / math.sqrt(self._step_hours)

    def shock(self, step: int, price_change: float, multiplier: float, duration_steps: int) -> None:
        """Apply news at `step` (now or later): the jump lands on that step's value, the
        multiplier on the moves of the `duration_steps` steps after it."""
        if step < self.step:
            raise ValueError(
                f"{self.symbol} is at step {self.step}; news for step {step} needs a rebuild "
                "(FairValues.rebuild) with the news in its place"
            )
        if price_change:
            jump = math.log1p(price_change)
            if step == self.step:
                self._jump(jump)
            else:
                self._pending_jumps.setdefault(step, []).append(jump)
        if multiplier != 1 and duration_steps > 0:
            self._volatility_windows.append((step + 1, step + duration_steps, multiplier))

    def _jump(self, jump: float) -> None:
        """A news jump is permanent: a mean-reverting value's mean moves with it."""
        self.log_value = min(max(self.log_value + jump, self._log_floor), self._log_ceiling)
        if self._mean_reverting:
            self.mean_log_value += jump

    def _multiplier(self, step: int) -> float:
        multiplier = 1.0
        for first, last, factor in self._volatility_windows:
            if first <= step <= last:
                multiplier *= factor
        return multiplier

    def advance_to(self, step: int) -> None:
        """Move to `step` (not back): one move per step, each from that step's own draws."""
        if step < self.step:
            raise ValueError(f"{self.symbol} is at step {self.step}, cannot go back to {step}")
        at = self._draws.at
        log, sqrt, cos, sin = math.log, math.sqrt, math.cos, math.sin
        log_value = self.log_value
        turbulent = self.turbulent
        calm_sd, turbulent_sd = self._calm_sd, self._turbulent_sd
        enter, leave = self._enter_turbulence, self._leave_turbulence
        drift, reversion = self._drift, self._reversion
        mean_reverting = self._mean_reverting
        jump_probability, jump_mean, jump_sd = (
            self._jump_probability,
            self._jump_mean,
            self._jump_sd,
        )
        pending = self._pending_jumps
        windows = self._volatility_windows
        floor, ceiling = self._log_floor, self._log_ceiling
        for k in range(self.step + 1, step + 1):
            u_normal, u_angle, u_regime, u_jump = at(k)
            turbulent = u_regime >= leave if turbulent else u_regime < enter
            step_sd = turbulent_sd if turbulent else calm_sd
            if windows:
                step_sd *= self._multiplier(k)
            radius = sqrt(-2.0 * log(1.0 - u_normal))
            move = step_sd * radius * cos(TWO_PI * u_angle)
            if mean_reverting:
                log_value += reversion * (self.mean_log_value - log_value) + move
            else:
                log_value += drift - 0.5 * step_sd * step_sd + move
            if u_jump < jump_probability:
                log_value += jump_mean + jump_sd * radius * sin(TWO_PI * u_angle)
            if not floor < log_value < ceiling:
                log_value = min(max(log_value, floor), ceiling)
            if pending and k in pending:
                self.log_value = log_value
                for jump in pending.pop(k):
                    self._jump(jump)
                log_value = self.log_value
        self.log_value = log_value
        self.turbulent = turbulent
        self.step = step
        if windows:
            self._volatility_windows = [window for window in windows if window[1] > step]


class BarsPath:
    """An instrument whose fair value interpolates the closes of a bars file (time, close);
    before the first bar it is the first close, after the last the last. News shocks scale it
    from their step on; its volatility is the configured one, for the bots' spreads."""

    __slots__ = ("symbol", "step", "volatility", "_times", "_closes", "_step_seconds", "_factors")

    def __init__(self, instrument: Instrument, step_seconds: float) -> None:
        process = instrument.process
        if process is None or not process.bars:
            raise ValueError(f"{instrument.symbol} has no bars")
        self.symbol = instrument.symbol
        self.step = 0
        self.volatility = process.volatility
        self._times = [time_seconds for time_seconds, _ in process.bars]
        self._closes = [close for _, close in process.bars]
        self._step_seconds = step_seconds
        self._factors: list[tuple[int, float]] = []
        """(from step, factor) of every news shock."""

    def shock(self, step: int, price_change: float, multiplier: float, duration_steps: int) -> None:
        if step < self.step:
            raise ValueError(f"{self.symbol} is at step {self.step}; news for step {step} is late")
        if price_change:
            self._factors.append((step, 1.0 + price_change))

    def advance_to(self, step: int) -> None:
        if step < self.step:
            raise ValueError(f"{self.symbol} is at step {self.step}, cannot go back to {step}")
        self.step = step

    @property
    def value(self) -> float:
        time_seconds = self.step * self._step_seconds
        times, closes = self._times, self._closes
        index = bisect_right(times, time_seconds)
        if index == 0:
            close = closes[0]
        elif index == len(times):
            close = closes[-1]
        else:
            t0, t1 = times[index - 1], times[index]
            c0, c1 = closes[index - 1], closes[index]
            close = c0 + (c1 - c0) * (time_seconds - t0) / (t1 - t0)
        for first, factor in self._factors:
            if first <= self.step:
                close *= factor
        return close


class FairValues:
    """Every instrument's fair value at one step of a scenario, for one seed."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.scenario = scenario
        self.seed = seed
        self.step_seconds = scenario.step_seconds
        self.step_ns = round(scenario.step_seconds * NS_PER_SECOND)
        self.step = 0
        self.news_applied: list[FairValueShock] = []
        """In the order applied: with (scenario, seed, step) all a rebuild needs."""
        self.paths: dict[str, PricePath | BarsPath] = {}
        self._instruments = {instrument.symbol: instrument for instrument in scenario.instruments}
        for instrument in scenario.instruments:
            process = instrument.process
            if process is None:
                continue
            if process.kind == "bars":
                self.paths[instrument.symbol] = BarsPath(instrument, scenario.step_seconds)
            else:
                self.paths[instrument.symbol] = PricePath(instrument, seed, scenario.step_seconds)

    @classmethod
    def rebuild(
        cls, scenario: Scenario, seed: int, step: int, news_applied: Iterable[FairValueShock] = ()
    ) -> FairValues:
        """The fair values a simulator had at `step` after applying `news_applied` (in order)."""
        fair_values = cls(scenario, seed)
        for shock in news_applied:
            fair_values.apply(shock)
        fair_values.advance_to(step)
        return fair_values

    def step_at(self, time_ns: int) -> int:
        """The step in force at a time: the last one at or before it."""
        return time_ns // self.step_ns

    def advance_to(self, step: int) -> None:
        for path in self.paths.values():
            path.advance_to(step)
        self.step = step

    def advance_to_time(self, time_ns: int) -> None:
        step = self.step_at(time_ns)
        if step > self.step:
            self.advance_to(step)

    def apply(self, shock: FairValueShock) -> None:
        """Apply news at its step (now or later). News naming a linked symbol moves what it is
        made of: an ETF's every component, a pair's underlying."""
        if shock.step < self.step:
            raise ValueError(
                f"the fair values are at step {self.step}; news for step {shock.step} needs "
                "FairValues.rebuild with the news in its place"
            )
        for symbol in self._underlyings(shock.symbols):
            self.paths[symbol].shock(
                shock.step, shock.price_change, shock.volatility_multiplier, shock.duration_steps
            )
        self.news_applied.append(shock)

    def _underlyings(self, symbols: Iterable[str]) -> list[str]:
        found: list[str] = []
        for symbol in symbols:
            instrument = self._instruments.get(symbol)
            if instrument is None:
                raise ValueError(f"news names {symbol}, which is not an instrument of the scenario")
            if instrument.basket is not None:
                names = [component for component, _ in instrument.basket.shares]
            elif instrument.pair is not None:
                names = [instrument.pair.of]
            else:
                names = [symbol]
            found.extend(name for name in names if name not in found)
        return found

    def value(self, symbol: str) -> float:
        """Fair value in currency."""
        path = self.paths.get(symbol)
        if path is not None:
            return path.value
        instrument = self._instruments[symbol]
        if instrument.basket is not None:
            return sum(shares * self.value(part) for part, shares in instrument.basket.shares)
        pair = instrument.pair
        assert pair is not None
        return pair.ratio * self.value(pair.of)

    def ticks(self, symbol: str) -> float:
        """Fair value in ticks of the symbol (not rounded)."""
        return self.value(symbol) / self._instruments[symbol].tick_value

    def volatility(self, symbol: str) -> float:
        """Volatility per hour now; an ETF's as if its components moved independently."""
        path = self.paths.get(symbol)
        if path is not None:
            return path.volatility
        instrument = self._instruments[symbol]
        if instrument.pair is not None:
            return self.volatility(instrument.pair.of)
        assert instrument.basket is not None
        variance = sum(
            (shares * self.value(part) * self.volatility(part)) ** 2
            for part, shares in instrument.basket.shares
        )
        return math.sqrt(variance) / self.value(symbol)

    def snapshot(self) -> dict[str, float]:
        """Every symbol's fair value now, in currency."""
        return {symbol: self.value(symbol) for symbol in self._instruments}
