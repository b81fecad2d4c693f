"""What the scenario's timeline asks of the exchange now, next to what the log says it is.

The simulator does not remember what it did: each time it looks, it compares the scenario at
its clock (which round should be open, which news should be out) with the exchange state folded
from the log, and returns the admin operations that close the gap. A restarted simulator,
or one that was away for a while, therefore does exactly what is still missing. Every operation
is idempotent at the engine (a round started twice, news published twice are refused), so an
operation repeated before its event comes back through the log changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from data_svc.market import RUNNING, STOPPED, ExchangeState
from data_svc.scenario import Scenario

NS_PER_SECOND = 1_000_000_000


@dataclass(frozen=True, slots=True)
class StartRound:
    number: int
    duration_seconds: float
    reset: bool


@dataclass(frozen=True, slots=True)
class EndRound:
    number: int
    next_round_in_seconds: float
    """0: no round follows."""


@dataclass(frozen=True, slots=True)
class OpenMarket:
    pass


@dataclass(frozen=True, slots=True)
class CloseMarket:
    pass


@dataclass(frozen=True, slots=True)
class PublishNews:
    news_id: str
    headline: str
    symbols: tuple[str, ...]
    price_change: float
    volatility_multiplier: float
    duration_seconds: float


@dataclass(frozen=True, slots=True)
class FinishScenario:
    pass


Operation = StartRound | EndRound | OpenMarket | CloseMarket | PublishNews | FinishScenario


def identity(operation: Operation) -> tuple:
    """What an operation does, without the figures that change from one look to the next (a
    round's remaining duration): the runner sends each at most once while its event travels."""
    match operation:
        case StartRound(number) | EndRound(number):
            return (type(operation).__name__, number)
        case PublishNews(news_id):
            return ("PublishNews", news_id)
        case _:
            return (type(operation).__name__,)


def timeline_news_id(state: ExchangeState, cycle: int, index: int) -> str:
    """The id of the scenario's news item `index` in a pass over a repeating schedule (0 when
    it does not repeat): the same after a restart, another when the scenario is loaded again."""
    scenario = state.scenario
    return f"{scenario.name}-{scenario.loaded_sequence}-{cycle + 1}-{index + 1}"


def due_operations(scenario: Scenario, state: ExchangeState, now: int) -> list[Operation]:
    """The operations that bring the exchange to where `scenario` is at log time `now`."""
    status = state.scenario
    if status.name != scenario.name:
        return []
    if status.state == STOPPED:
        return _wind_down(state, following=None)
    if status.state != RUNNING:
        return []
    clock = status.clock(now) / NS_PER_SECOND
    schedule = scenario.schedule
    operations: list[Operation] = []
    scheduled = schedule.round_at(clock)
    if scheduled is not None:
        if state.round < scheduled.number:
            # An earlier round still open (the simulator was away at its end) ends as usual
            # first, so its day orders expire before the next round opens.
            operations.extend(_wind_down(state, following=None))
            duration = scheduled.closes_at - clock
            operations.append(StartRound(scheduled.number, duration, scheduled.reset))
            if not state.market_open or state.round_open:
                operations.append(OpenMarket())
        elif state.round == scheduled.number and state.round_open and not state.market_open:
            operations.append(OpenMarket())
    elif state.round_open:
        following = schedule.next_round_after(clock)
        operations.extend(
            _wind_down(state, following.opens_at - clock if following is not None else None)
        )
    elif not schedule.repeat and clock >= schedule.end_seconds:
        operations.append(FinishScenario())
    # A repeating schedule repeats its news too, each pass at the same times within it; a pass
    # the simulator missed entirely (it was away) is not published late.
    cycle = int(clock // schedule.cycle_seconds) if schedule.repeat else 0
    within = clock - cycle * schedule.cycle_seconds
    for index, news in enumerate(scenario.news):
        news_id = timeline_news_id(state, cycle, index)
        if news.time_seconds <= within and news_id not in state.news_ids:
            operations.append(
                PublishNews(
                    news_id,
                    news.headline,
                    news.symbols,
                    news.price_change,
                    news.volatility_multiplier,
                    news.duration_seconds,
                )
            )
    return operations


def _wind_down(state: ExchangeState, following: float | None) -> list[Operation]:
    """A round's end: the market closes (GFD orders expire), then the round's scores."""
    operations: list[Operation] = []
    if state.round_open:
        if state.market_open:
            operations.append(CloseMarket())
        operations.append(EndRound(state.round, following or 0.0))
    return operations
