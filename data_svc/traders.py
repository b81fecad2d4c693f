"""The bots between their agents and the exchange: when each decides, what it sees, how fast it
may send. Pure, like the agents: scenario time and the log's state are passed in.
"""

from __future__ import annotations

import heapq
import math
from typing import Protocol

from data_svc.agents import (
    AgentView,
    Arrival,
    Bot,
    Limits,
    OpenOrder,
    Side,
    SymbolView,
    arrivals,
)
from data_svc.market import ExchangeState
from data_svc.prices import FairValues

NS_PER_SECOND = 1_000_000_000
MINUTE_NS = 60 * NS_PER_SECOND
STALE_ARRIVAL_NS = 2 * NS_PER_SECOND
"""Decisions due longer ago than this (the simulator was busy or away) are skipped, not sent in
a burst."""


class ExchangeRules(Protocol):
    """The fields of the engine's settings the bots keep to."""

    position_limit: int
    short_limit: int
    max_open_orders: int
    maker_fee_centi_bps: int
    taker_fee_centi_bps: int


def bot_limits(settings: ExchangeRules) -> Limits:
    """The exchange's rules (the log's, or the engine's own settings in a test) as every bot's
    view carries them: an organizer's change reaches the bots."""
    return Limits(
        settings.position_limit,
        settings.short_limit,
        settings.max_open_orders,
        max(settings.maker_fee_centi_bps, settings.taker_fee_centi_bps, 0) / 100,
    )


class MessageBudget:
    """The gateway's token bucket for one user (gateway_svc/rate_limit.py), kept by the bot
    itself so it never sends what the gateway would refuse."""

    __slots__ = ("rate", "burst", "tokens", "counted_at")

    def __init__(self, rate: float, burst: int, now: int = 0) -> None:
        self.rate = rate
        self.burst = float(burst or max(1, math.ceil(2 * rate)))
        self.tokens = self.burst
        self.counted_at = now

    def take(self, now: int) -> bool:
        elapsed = max(0, now - self.counted_at) / NS_PER_SECOND
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.counted_at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class ArrivalSchedule:
    """Every bot's decisions in time order, from scenario time `start` on (those before it
    happened before a restart and are not made again)."""

    def __init__(self, seed: int, bots: tuple[Bot, ...], start: int) -> None:
        self.seed = seed
        self.bots = bots
        self.start = start
        self.minute = start // MINUTE_NS
        self._queue: list[tuple[int, int, Arrival]] = []
        self._fill(self.minute)

    def _fill(self, minute: int) -> None:
        for index, bot in enumerate(self.bots):
            agent = bot.agent
            for arrival in arrivals(self.seed, agent.agent_id, agent.rate, minute):
                if arrival.time >= self.start:
                    heapq.heappush(self._queue, (arrival.time, index, arrival))

    def due(self, until: int) -> tuple[list[tuple[Bot, Arrival]], int]:
        """The decisions at or before `until` in order, and how many were skipped as stale."""
        found: list[tuple[Bot, Arrival]] = []
        skipped = 0
        while True:
            while self._queue and self._queue[0][0] <= until:
                time, index, arrival = heapq.heappop(self._queue)
                if until - time > STALE_ARRIVAL_NS:
                    skipped += 1
                else:
                    found.append((self.bots[index], arrival))
            if (self.minute + 1) * MINUTE_NS > until:
                return found, skipped
            self.minute += 1
            self._fill(self.minute)


def agent_view(
    bot: Bot,
    state: ExchangeState,
    fair_values: FairValues,
    limits: Limits,
    clock: int,
    now: int,
    decision_id: str,
) -> AgentView | None:
    """What the bot may know at scenario time `clock` (log time `now`): its symbol's book top,
    last trades and fair value, its cash, position and open orders. None while its account or
    symbol is not in the log yet."""
    agent = bot.agent
    market = state.symbols.get(agent.symbol)
    account = state.bots.get(agent.agent_id)
    if market is None or account is None:
        return None
    open_orders = tuple(
        OpenOrder(
            order.order_id,
            order.client_order_id,
            Side(order.side),
            order.price,
            order.remaining,
            clock - max(0, now - order.created_at),
        )
        for order in account.open_orders.values()
        if order.symbol == agent.symbol
    )
    view = SymbolView(
        agent.symbol,
        market.tick_size,
        market.lot_size,
        market.tick_cash,
        market.bid,
        market.bid_size,
        market.ask,
        market.ask_size,
        market.last,
        market.last_quantity,
        fair_values.ticks(agent.symbol),
        fair_values.volatility(agent.symbol),
        tuple(market.recent_trades),
        account.positions.get(agent.symbol, 0),
        open_orders,
    )
    return AgentView(
        clock,
        decision_id,
        account.cash - account.held_cash(state.symbols),
        len(account.open_orders),
        limits,
        (view,),
    )
