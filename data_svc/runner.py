"""Plays one loaded scenario on the exchange: its schedule and news through the admin API, its
bots through their own API keys, each decision from the state the log shows.

Everything it acts on is derived again after a restart: the scenario's clock and the news (with
their shocks) from the log, the fair values by rebuilding them from the seed, the bots' next
decisions from the seeded arrivals after the clock. What it remembers in memory (the bots'
keys, which operation it just sent) only saves work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import assert_never

import grpc

from data_svc import director
from data_svc.agents import Bot, CancelOrder, Limits, PlaceOrder, build_bots
from data_svc.gateway import GatewayClient, is_done_already
from data_svc.market import RUNNING, ExchangeState, PublishedNews
from data_svc.prices import FairValues, FairValueShock
from data_svc.scenario import Scenario
from data_svc.traders import ArrivalSchedule, MessageBudget, agent_view, bot_limits
from exchange.v1 import admin_pb2, competition_pb2, types_pb2

log = logging.getLogger(__name__)

NS_PER_SECOND = 1_000_000_000
REPEAT_AFTER_S = 3.0
"""An operation sent is not sent again for this long: its event is on its way through the log."""
RATE_WINDOW_S = 60.0
BOT_CALLS_AT_ONCE = 16
"""How many bots' orders are in flight together (bots are many, the gateway is one)."""
OPEN_ACCOUNTS_AT_ONCE = 8


@dataclass
class KindStats:
    bots: int = 0
    orders: int = 0
    cancels: int = 0
    sent_at: deque[float] = field(default_factory=deque)
    """Monotonic times of the orders of the last RATE_WINDOW_S."""
    since: float = field(default_factory=time.monotonic)

    def count_order(self, now: float) -> None:
        self.orders += 1
        self.sent_at.append(now)
        self._forget_before(now)

    def orders_per_second(self, now: float) -> float:
        self._forget_before(now)
        window = min(RATE_WINDOW_S, now - self.since)
        return len(self.sent_at) / window if window > 0 else 0.0

    def _forget_before(self, now: float) -> None:
        while self.sent_at and now - self.sent_at[0] > RATE_WINDOW_S:
            self.sent_at.popleft()


@dataclass
class SimulatorStats:
    """What the simulator sent and what came of it, since the process started."""

    kinds: dict[str, KindStats] = field(default_factory=dict)
    rejected: Counter[str] = field(default_factory=Counter)
    """Orders the exchange rejected or refused, by reason."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Decisions not made (busy, stale) and messages not sent (throttled)."""


class ScenarioRunner:
    def __init__(
        self,
        scenario: Scenario,
        seed: int,
        loaded_sequence: int,
        state: ExchangeState,
        gateway: GatewayClient,
        keys: dict[str, str],
        stats: SimulatorStats,
    ) -> None:
        self.scenario = scenario
        self.seed = seed
        self.loaded_sequence = loaded_sequence
        self.state = state
        self.gateway = gateway
        self.keys = keys
        """Each bot's API key, by user id (the process's memory: a restart rotates them)."""
        self.stats = stats
        self.bots = build_bots(scenario)
        self.fair_values = FairValues(scenario, seed)
        self.news_applied = 0
        """How many of the state's news the fair values hold."""
        self.arrivals: ArrivalSchedule | None = None
        self._sent: dict[tuple, float] = {}
        """When each operation (by what it does, not its changing figures) was last sent."""
        self._keys_missing = False
        self._repairing: asyncio.Task[None] | None = None
        self._busy: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._calls = asyncio.Semaphore(BOT_CALLS_AT_ONCE)
        self._budgets: dict[str, MessageBudget] = {}
        """Each bot's token bucket at the exchange's message rate (the gateway's burst: twice
        the rate), made again when the rate changes."""
        self._budget_rate = 0
        for kind in stats.kinds.values():
            kind.bots = 0
        for bot in self.bots:
            stats.kinds.setdefault(bot.agent.kind, KindStats()).bots += 1

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.scenario.name, self.seed, self.loaded_sequence)

    # ---- setting up ----------------------------------------------------------------------

    async def open_bot_accounts(self) -> None:
        """Every bot's account with its starting cash and position, and a key this process
        knows: a bot opened before (by an earlier process) gets a new key."""
        limit = asyncio.Semaphore(OPEN_ACCOUNTS_AT_ONCE)

        async def open_one(bot: Bot) -> None:
            user_id = bot.agent.agent_id
            if user_id in self.keys and user_id in self.state.bots:
                return
            async with limit:
                if user_id in self.state.users:
                    rotated = await self.gateway.call_admin(
                        self.gateway.admin.RotateKey, admin_pb2.RotateKeyRequest(user_id=user_id)
                    )
                    self.keys[user_id] = rotated.api_key
                    return
                request = admin_pb2.CreateUserRequest(
                    user_id=user_id, cash=bot.cash, role=admin_pb2.BOT
                )
                if bot.position:
                    request.positions[bot.agent.symbol] = bot.position
                try:
                    created = await self.gateway.call_admin(self.gateway.admin.CreateUser, request)
                except grpc.aio.AioRpcError as error:
                    if error.code() != grpc.StatusCode.ALREADY_EXISTS:
                        raise
                    rotated = await self.gateway.call_admin(
                        self.gateway.admin.RotateKey, admin_pb2.RotateKeyRequest(user_id=user_id)
                    )
                    self.keys[user_id] = rotated.api_key
                    return
                self.keys[user_id] = created.api_key

        await asyncio.gather(*(open_one(bot) for bot in self.bots))

    def start_clock(self, now: int) -> None:
        """Decisions from the scenario's clock now on; the fair values rebuilt to it."""
        clock = self.state.clock(now)
        self._sync_fair_values(clock, rebuild=True)
        self.arrivals = ArrivalSchedule(self.seed, self.bots, clock)
        log.info(
            "playing scenario %s seed %d from %.1fs of its clock: %d bots",
            self.scenario.name,
            self.seed,
            clock / NS_PER_SECOND,
            len(self.bots),
        )

    # ---- each tick -------------------------------------------------------------------------

    async def tick(self, now: int) -> None:
        """Bring the exchange to the scenario's time and let the due bots decide."""
        assert self.arrivals is not None
        state = self.state
        clock = state.clock(now)
        self._sync_fair_values(clock)
        await self._operate(director.due_operations(self.scenario, state, now))
        due, stale = self.arrivals.due(clock)
        if stale:
            self.stats.skipped["stale decisions"] += stale
        if self._keys_missing and (self._repairing is None or self._repairing.done()):
            self._keys_missing = False
            self._repairing = asyncio.create_task(self.open_bot_accounts())
            self._repairing.add_done_callback(_log_failure)
        if state.scenario.state != RUNNING or not state.market_open or not state.round_open:
            return
        limits = bot_limits(state.settings)
        self._sync_budgets(state.settings.message_rate_per_second)
        for bot, arrival in due:
            # The event in the id: a scenario loaded again the same day sends new clientOrderIds.
            decision_id = f"{_base36(self.loaded_sequence)}.{arrival.decision_id}"
            self._decide(bot, decision_id, arrival.rng(), clock, now, limits)

    def _sync_budgets(self, rate: int) -> None:
        if rate != self._budget_rate:
            self._budget_rate = rate
            self._budgets = {
                bot.agent.agent_id: MessageBudget(rate, 0) for bot in self.bots if rate
            }

    def _sync_fair_values(self, clock: int, rebuild: bool = False) -> None:
        """News the log published since the last look, into the fair values (rebuilt when one
        lands on a step already passed), then on to the clock."""
        news = self.state.news
        fresh = [self._shock(item) for item in news[self.news_applied :]]
        self.news_applied = len(news)
        fresh_shocks = [shock for shock in fresh if shock is not None]
        if rebuild or any(shock.step < self.fair_values.step for shock in fresh_shocks):
            shocks = [s for s in (self._shock(item) for item in news) if s is not None]
            step = self.fair_values.step_at(clock)
            self.fair_values = FairValues.rebuild(self.scenario, self.seed, step, shocks)
        else:
            for shock in fresh_shocks:
                self.fair_values.apply(shock)
        self.fair_values.advance_to_time(clock)

    def _shock(self, news: PublishedNews) -> FairValueShock | None:
        """The model's form of a published item; None when it moves nothing of the scenario's
        (an organizer's news about other symbols, or a headline without a shock)."""
        symbols = tuple(s for s in news.symbols if s in self.scenario.symbols)
        if not symbols or (news.price_change == 0 and news.volatility_multiplier in (0, 1)):
            return None
        return FairValueShock.at_time(
            news.scenario_time / NS_PER_SECOND,
            symbols,
            news.price_change,
            news.volatility_multiplier or 1.0,
            news.duration_seconds,
            self.scenario.step_seconds,
        )

    async def _operate(self, operations: list[director.Operation]) -> None:
        wall = time.monotonic()
        self._sent = {k: at for k, at in self._sent.items() if wall - at < REPEAT_AFTER_S}
        for operation in operations:
            identity = director.identity(operation)
            if identity in self._sent:
                continue
            self._sent[identity] = wall
            try:
                await self._send(operation)
            except grpc.aio.AioRpcError as error:
                if not is_done_already(error):
                    log.warning("%s failed: %s %s", operation, error.code().name, error.details())
                    return
            log.info("scenario %s: %s", self.scenario.name, operation)

    async def _send(self, operation: director.Operation) -> None:
        admin, call = self.gateway.admin, self.gateway.call_admin
        match operation:
            case director.StartRound(number, duration_seconds, reset):
                request = admin_pb2.StartRoundRequest(
                    round=number,
                    duration_seconds=max(duration_seconds, 0.001),
                    reset_accounts=reset,
                )
                await call(admin.StartRound, request)
            case director.EndRound(number, next_round_in_seconds):
                request = admin_pb2.EndRoundRequest(
                    round=number, next_round_in_seconds=next_round_in_seconds
                )
                await call(admin.EndRound, request)
            case director.OpenMarket():
                await call(admin.OpenMarket, admin_pb2.OpenMarketRequest())
            case director.CloseMarket():
                await call(admin.CloseMarket, admin_pb2.CloseMarketRequest())
            case director.PublishNews():
                request = admin_pb2.PostNewsRequest(
                    news_id=operation.news_id,
                    headline=operation.headline,
                    symbols=operation.symbols,
                    price_change=operation.price_change,
                    volatility_multiplier=operation.volatility_multiplier,
                    duration_seconds=operation.duration_seconds,
                )
                await call(admin.PostNews, request)
            case director.FinishScenario():
                request = admin_pb2.SetScenarioRequest(state=competition_pb2.FINISHED)
                await call(admin.SetScenario, request)
            case _:
                assert_never(operation)

    # ---- the bots --------------------------------------------------------------------------

    def _decide(
        self, bot: Bot, decision_id: str, rng, clock: int, now: int, limits: Limits
    ) -> None:
        agent = bot.agent
        user_id = agent.agent_id
        market = self.state.symbols.get(agent.symbol)
        account = self.state.bots.get(user_id)
        if market is None or market.halted or account is None or account.disabled:
            return
        if user_id in self._busy:
            self.stats.skipped["busy decisions"] += 1
            return
        key = self.keys.get(user_id)
        if key is None:
            self._keys_missing = True  # its key was rotated under it: it gets a new one
            return
        view = agent_view(bot, self.state, self.fair_values, limits, clock, now, decision_id)
        if view is None:
            return
        intents = agent.decide(view, rng)
        if not intents:
            return
        self._busy.add(user_id)
        task = asyncio.create_task(self._send_intents(bot, key, intents, float(market.tick_size)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)

    async def _send_intents(self, bot: Bot, key: str, intents: list, tick_size: float) -> None:
        user_id = bot.agent.agent_id
        kind = self.stats.kinds[bot.agent.kind]
        budget = self._budgets.get(user_id)
        try:
            async with self._calls:
                for intent in intents:
                    if budget is not None and not budget.take(time.time_ns()):
                        self.stats.skipped["throttled messages"] += 1
                        continue
                    try:
                        if isinstance(intent, PlaceOrder):
                            kind.count_order(time.monotonic())
                            answer = await self.gateway.place(key, intent, tick_size)
                            if answer.order.status == types_pb2.REJECTED:
                                self.stats.rejected[answer.order.reject_reason] += 1
                        elif isinstance(intent, CancelOrder):
                            kind.cancels += 1
                            await self.gateway.cancel(key, intent)
                    except grpc.aio.AioRpcError as error:
                        # A cancel of an order that just filled, a bot's key rotated under it:
                        # the next decision starts from the log again.
                        self.stats.rejected[error.code().name] += 1
                        if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                            self.keys.pop(user_id, None)
                            return
        finally:
            self._busy.discard(user_id)

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._repairing] if self._repairing else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _log_failure(task: asyncio.Task[None]) -> None:
    """A bot's calls or a key repair that failed other than by an RPC error: said, not lost."""
    if not task.cancelled() and task.exception() is not None:
        log.error("simulator task failed", exc_info=task.exception())


def _base36(number: int) -> str:
    """Short, for clientOrderIds (at most 64 characters)."""
    digits = ""
    while True:
        number, digit = divmod(number, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[digit] + digits
        if not number:
            return digits
