"""A scenario run in-process: the bots trade on the pure MatchingEngine under a simulated clock.

A test harness (it joins the simulator's domain to the engine's, which only the tests may do):
the same pieces the simulator service uses (fair values, bots, arrivals, views built from the
exchange's state and events), driven without I/O: every bot acts at its Poisson arrival times,
its intents become `place_order` / `cancel_order` commands, and the result is a tape of every
trade plus per-minute book samples. The tape serializes canonically, so one (scenario, seed)
gives the same bytes on every run, and tests can measure the market's stylized facts on it.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass

from data_svc.agents import (
    AgentView,
    Arrival,
    Bot,
    CancelOrder,
    MomentumParams,
    OpenOrder,
    PlaceOrder,
    SymbolView,
    arrivals,
    build_bots,
)
from data_svc.prices import FairValues, FairValueShock
from data_svc.scenario import CASH_UNITS_PER_CURRENCY, News, Rules, Scenario, Session
from data_svc.traders import MessageBudget, bot_limits
from engine_svc.accounts import BOT
from engine_svc.engine import MatchingEngine
from engine_svc.events import (
    CommandRefused,
    Event,
    Grant,
    NewsShock,
    OrderRejected,
    TradeExecuted,
)
from engine_svc.orders import OrderType, Side, TimeInForce
from engine_svc.rules import RULES_VERSION, ExchangeSettings
from mockex.ranking import METRICS

NS_PER_SECOND = 1_000_000_000
MINUTE_NS = 60 * NS_PER_SECOND
RECENT_TRADES = 50
"""Trade prices a bot sees per symbol (more if a momentum bot looks further back)."""
TAPE_FORMAT = "mockex-tape 1"


@dataclass(frozen=True, slots=True)
class TapeTrade:
    time: int
    """Nanoseconds of scenario time."""
    symbol: str
    price: int
    """Ticks."""
    quantity: int
    aggressor: Side


@dataclass(frozen=True, slots=True)
class Sample:
    """The top of one symbol's book at a minute boundary (0: that side is empty)."""

    time: int
    symbol: str
    bid: int
    ask: int
    last: int
    fair_value: float
    """Ticks."""

    @property
    def mid(self) -> float | None:
        return (self.bid + self.ask) / 2 if self.bid and self.ask else None

    @property
    def spread(self) -> int | None:
        return self.ask - self.bid if self.bid and self.ask else None


@dataclass(frozen=True, slots=True)
class Tape:
    """What one run produced: every trade, the minute samples, and counts of what the bots
    sent and what the exchange made of it."""

    scenario: str
    seed: int
    duration_seconds: float
    trades: tuple[TapeTrade, ...]
    samples: tuple[Sample, ...]
    counts: tuple[tuple[str, int], ...]

    def trades_of(self, symbol: str) -> list[TapeTrade]:
        return [trade for trade in self.trades if trade.symbol == symbol]

    def samples_of(self, symbol: str) -> list[Sample]:
        return [sample for sample in self.samples if sample.symbol == symbol]

    def to_bytes(self) -> bytes:
        """Canonical form: one line per record, integers as they are, fair values to 1e-6
        ticks; the same tape always gives the same bytes."""
        lines = [TAPE_FORMAT, f"run {self.scenario} {self.seed} {self.duration_seconds!r}"]
        lines.extend(
            f"T {t.time} {t.symbol} {t.price} {t.quantity} {t.aggressor.name}" for t in self.trades
        )
        lines.extend(
            f"S {s.time} {s.symbol} {s.bid} {s.ask} {s.last} {s.fair_value:.6f}"
            for s in self.samples
        )
        lines.extend(f"C {name} {count}" for name, count in self.counts)
        return ("\n".join(lines) + "\n").encode()


def exchange_settings(rules: Rules) -> ExchangeSettings:
    """The scenario's rules as the engine's settings: it enforces the limits and charges the
    fees (in hundredths of a basis point), and keeps the ranking."""
    return ExchangeSettings(
        rules_version=RULES_VERSION,
        short_limit=rules.short_limit,
        max_open_orders=rules.max_open_orders,
        position_limit=rules.position_limit,
        maker_fee_centi_bps=round(rules.maker_fee_bps * 100),
        taker_fee_centi_bps=round(rules.taker_fee_bps * 100),
        message_rate_per_second=rules.message_rate_per_second,
        ranking=METRICS[rules.ranking],
    )


class Simulation:
    """One scenario and seed on an in-process engine; `run` advances it, `tape` reports."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        rules = scenario.rules
        self.scenario = scenario
        self.seed = seed
        self.fair_values = FairValues(scenario, seed)
        self.engine = MatchingEngine(exchange_settings(rules), market_open=False)
        self.bots = build_bots(scenario)
        self.limits = bot_limits(exchange_settings(rules))
        self.now = 0
        lookback = max(
            [RECENT_TRADES]
            + [
                group.params.lookback_trades
                for group in scenario.bots
                if isinstance(group.params, MomentumParams)
            ]
        )
        self._recent = {symbol: deque(maxlen=lookback) for symbol in scenario.symbols}
        self._open_orders: dict[str, dict[str, None]] = {
            bot.agent.agent_id: {} for bot in self.bots
        }
        """Each bot's order ids that may still rest, in the order placed."""
        self._budgets = {
            bot.agent.agent_id: MessageBudget(rules.message_rate_per_second, rules.message_burst)
            for bot in self.bots
            if rules.message_rate_per_second
        }
        self._orders_sent = 0
        self._trades: list[TapeTrade] = []
        self._samples: list[Sample] = []
        self._counts: Counter[str] = Counter()
        self._news = [
            (news, FairValueShock.from_news(news, scenario.step_seconds)) for news in scenario.news
        ]
        self._list_symbols_and_open_accounts()

    def _list_symbols_and_open_accounts(self) -> None:
        for instrument in self.scenario.instruments:
            reference = max(1, round(self.fair_values.ticks(instrument.symbol)))
            self.engine.add_symbol(
                instrument.symbol, 0, instrument.tick_size, instrument.lot_size, reference
            )
        for bot in self.bots:
            grants = (Grant(bot.agent.symbol, bot.position, 0),) if bot.position else ()
            cash = round(bot.cash * CASH_UNITS_PER_CURRENCY)
            self.engine.create_account(bot.agent.agent_id, cash, 0, grants=grants, role=BOT)

    # ---- the clock ------------------------------------------------------------------------

    def run(self, duration_seconds: float | None = None) -> Tape:
        """Run from the start to `duration_seconds` (default: the schedule's end)."""
        end_seconds = duration_seconds or self.scenario.schedule.end_seconds
        end = round(end_seconds * NS_PER_SECOND)
        for minute in range(math.ceil(end / MINUTE_NS)):
            start = minute * MINUTE_NS
            if minute:
                self._sample(start)
            for time, _, _, action in self._timeline(minute, min(start + MINUTE_NS, end)):
                self.now = time
                self.fair_values.advance_to_time(time)
                action()
        self.now = end
        self.fair_values.advance_to_time(end)
        if end % MINUTE_NS == 0:
            self._sample(end)
        for session in self.scenario.schedule.sessions():
            if round(session.closes_at * NS_PER_SECOND) == end:
                self._close(session)
        return self.tape(end_seconds)

    def _timeline(self, minute: int, end: int) -> list[tuple[int, int, int, object]]:
        """What happens in one minute, in order: round closes and opens, news, arrivals."""
        start = minute * MINUTE_NS
        timeline: list[tuple[int, int, int, object]] = []
        for session in self.scenario.schedule.sessions():
            closes = round(session.closes_at * NS_PER_SECOND)
            opens = round(session.opens_at * NS_PER_SECOND)
            if start <= closes < end:
                timeline.append((closes, 0, session.index, lambda s=session: self._close(s)))
            if start <= opens < end:
                timeline.append((opens, 1, session.index, lambda s=session: self._open(s)))
        for index, (news, shock) in enumerate(self._news):
            at = round(news.time_seconds * NS_PER_SECOND)
            if start <= at < end:
                timeline.append(
                    (at, 2, index, lambda i=index, n=news, s=shock: self._publish(i, n, s))
                )
        for index, bot in enumerate(self.bots):
            agent = bot.agent
            for arrival in arrivals(self.seed, agent.agent_id, agent.rate, minute):
                if arrival.time < end:
                    timeline.append(
                        (arrival.time, 3, index, lambda bot=bot, a=arrival: self._decide(bot, a))
                    )
        timeline.sort(key=lambda entry: entry[:3])
        return timeline

    def _open(self, session: Session) -> None:
        """A round starts: participants are reset if the schedule says so (bots never are)."""
        closes_at = round(session.closes_at * NS_PER_SECOND)
        reset = self.scenario.schedule.reset_between_rounds and session.index > 0
        self.engine.start_round(session.index + 1, closes_at, reset, self.now)
        self.engine.open_market(self.now)

    def _close(self, session: Session) -> None:
        self.engine.close_market(self.now)
        self.engine.end_round(session.index + 1, self.now)

    def _publish(self, index: int, news: News, shock: FairValueShock) -> None:
        """Headline and symbols to everyone; the shock moves the fair values from its step."""
        terms = NewsShock(news.price_change, news.volatility_multiplier, news.duration_seconds)
        self.engine.publish_news(f"news-{index + 1}", news.headline, news.symbols, terms, self.now)
        self.fair_values.apply(shock)
        self._counts["news"] += 1

    def _sample(self, time: int) -> None:
        self.fair_values.advance_to_time(time)
        for symbol, state in self.engine.symbols.items():
            bid = state.book.best_bid() or 0
            ask = state.book.best_ask() or 0
            fair = self.fair_values.ticks(symbol)
            self._samples.append(Sample(time, symbol, bid, ask, state.last, fair))

    # ---- one bot's decision ---------------------------------------------------------------

    def _decide(self, bot: Bot, arrival: Arrival) -> None:
        if not self.engine.market_open:
            return
        agent = bot.agent
        view = self.view(bot, arrival.decision_id)
        budget = self._budgets.get(agent.agent_id)
        for intent in agent.decide(view, arrival.rng()):
            if budget is not None and not budget.take(self.now):
                self._counts["throttled"] += 1
                continue
            if isinstance(intent, CancelOrder):
                events = self.engine.cancel_order(intent.order_id, agent.agent_id, self.now)
                self._counts["cancels"] += 1
            else:
                events = self._place(agent.agent_id, intent)
            self._record(events)

    def _place(self, user_id: str, intent: PlaceOrder) -> list[Event]:
        self._orders_sent += 1
        order_id = f"sim-{self._orders_sent}"
        events = self.engine.place_order(
            order_id,
            user_id,
            intent.symbol,
            Side(intent.side),
            OrderType(intent.type),
            TimeInForce(intent.time_in_force),
            intent.price,
            intent.quantity,
            self.now,
            intent.client_order_id,
        )
        self._counts["orders"] += 1
        if order_id in self.engine.open_orders:
            self._open_orders[user_id][order_id] = None
        return events

    def _record(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, TradeExecuted):
                self._trades.append(
                    TapeTrade(
                        event.timestamp,
                        event.symbol,
                        event.price,
                        event.quantity,
                        event.aggressor_side,
                    )
                )
                self._recent[event.symbol].append(event.price)
            elif isinstance(event, OrderRejected):
                self._counts[f"rejected {event.reason.name}"] += 1
            elif isinstance(event, CommandRefused):
                self._counts[f"refused {event.reason.name}"] += 1

    def view(self, bot: Bot, decision_id: str) -> AgentView:
        """What the bot may know now, from the engine's state: its symbol's book top, last
        trades and fair value, its cash, position and open orders."""
        agent = bot.agent
        engine = self.engine
        symbol = agent.symbol
        state = engine.symbols[symbol]
        account = engine.accounts[agent.agent_id]
        bids, asks = state.book.bids, state.book.asks
        bid_level, ask_level = bids.best_level(), asks.best_level()
        ids = self._open_orders[agent.agent_id]
        open_orders = []
        for order_id in list(ids):
            order = engine.open_orders.get(order_id)
            if order is None:
                del ids[order_id]
                continue
            open_orders.append(
                OpenOrder(
                    order_id,
                    order.terms.client_order_id,
                    order.side,
                    order.price,
                    order.remaining,
                    order.terms.created_at,
                )
            )
        position = account.positions.get(symbol)
        market = SymbolView(
            symbol,
            state.tick_size,
            state.lot_size,
            state.tick_cash,
            bid_level.price if bid_level else 0,
            bid_level.quantity if bid_level else 0,
            ask_level.price if ask_level else 0,
            ask_level.quantity if ask_level else 0,
            state.last,
            state.last_quantity,
            self.fair_values.ticks(symbol),
            self.fair_values.volatility(symbol),
            tuple(self._recent[symbol]),
            position.quantity if position else 0,
            tuple(open_orders),
        )
        return AgentView(
            self.now,
            decision_id,
            account.available_cash,
            engine.open_order_counts.get(agent.agent_id, 0),
            self.limits,
            (market,),
        )

    def tape(self, duration_seconds: float) -> Tape:
        return Tape(
            self.scenario.name,
            self.seed,
            float(duration_seconds),
            tuple(self._trades),
            tuple(self._samples),
            tuple(sorted(self._counts.items())),
        )


def simulate(scenario: Scenario, seed: int, duration_seconds: float | None = None) -> Tape:
    """Run `scenario` with `seed` for `duration_seconds` (default: its whole schedule)."""
    return Simulation(scenario, seed).run(duration_seconds)
